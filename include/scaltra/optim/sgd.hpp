// Stochastic gradient descent with momentum, dampening, Nesterov momentum
// (Sutskever et al., 2013) and L2 weight decay, as torch.optim.SGD documents it:
//
//   g ← g + λx
//   b ← g on the first step, else b ← μb + (1−τ)g       (when μ ≠ 0)
//   g ← g + μb if nesterov, else g ← b
//   x ← x − ηg
#pragma once

#include <array>
#include <cstdint>
#include <tuple>

#include "optimizer_base.hpp"
#include "schedule.hpp"

namespace scaltra {

template <Real S>
struct SgdOptions {
    LearningRate<S> lr = 1e-3;
    S momentum = S(0);      ///< μ
    S dampening = S(0);     ///< τ
    S weight_decay = S(0);  ///< λ
    bool nesterov = false;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        using detail::Bound;
        lr.validate("lr");
        detail::require_nonnegative("momentum", momentum);
        detail::require_in("dampening", dampening, S(0), Bound::closed, S(1), Bound::closed);
        detail::require_nonnegative("weight_decay", weight_decay);
        if (nesterov && (momentum <= S(0) || dampening != S(0)))
            throw InvalidArgument(detail::concat(
                "Invalid nesterov: Nesterov momentum requires momentum > 0 and dampening = 0, got "
                "momentum ",
                momentum, " and dampening ", dampening));
    }
};

template <Real S>
struct SgdState {
    std::int64_t step = 0;
    Vec<S> momentum_buffer;  ///< empty when momentum = 0

    static constexpr std::array field_names{"step", "momentum_buffer"};
    auto fields() { return std::tie(step, momentum_buffer); }
    auto fields() const { return std::tie(step, momentum_buffer); }

    void validate() const { detail::require_step_count(step); }
};

template <Real S>
class Sgd : public OptimizerBase<Sgd<S>, S, SgdState<S>, SgdOptions<S>> {
    using Base = OptimizerBase<Sgd<S>, S, SgdState<S>, SgdOptions<S>>;
    friend Base;

public:
    using typename Base::Options;
    using typename Base::State;
    static constexpr std::string_view kName = "SGD";

    using Base::Base;

    static State initial_state(const Layout& layout, const Options& options) {
        return {0, Vec<S>::Zero(options.momentum != S(0) ? layout.size() : 0)};
    }

    /// One step of `st` at learning rate `lr` in place of the options' (APO's η);
    /// false when it took x out of the finite range (detail::FiniteProbe).
    static bool apply_at(State& st, const Options& o, S lr, Eigen::Ref<Vec<S>> x,
                         const Eigen::Ref<const Vec<S>>& g) {
        const Constants k = constants(st, o);
        ++st.step;
        detail::FiniteProbe<S> probe;
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            auto xs = x.segment(i, len).array();
            piece<true>(st, o, k, i, xs, g.segment(i, len).array(),
                        [&](const auto& d) { xs -= lr * d; });
            probe.add(xs);
        });
        return probe.finite();
    }

    /// The direction d of the next step, leaving `st` as it is: that step at
    /// learning rate η is x ← x − ηd.
    static void direction(const State& st, const Options& o, const Eigen::Ref<const Vec<S>>& x,
                          const Eigen::Ref<const Vec<S>>& g, Eigen::Ref<Vec<S>> d) {
        const Constants k = constants(st, o);
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            piece<false>(st, o, k, i, x.segment(i, len).array(), g.segment(i, len).array(),
                         [&](const auto& di) { d.segment(i, len).array() = di; });
        });
    }

private:
    struct Constants {
        S keep, damp;  ///< b ← keep·b + (1 − damp)·g: b ← g on the first step
    };
    static Constants constants(const State& st, const Options& o) {
        const bool first = st.step == 0;
        return {first ? S(0) : o.momentum, first ? S(0) : o.dampening};
    }

    /// The direction on elements [i, i + len), handed to use(d); with Commit the
    /// momentum buffer takes its new value b′ first.
    template <bool Commit, class St, class XS, class GS, class Use>
    static void piece(St& st, const Options& o, const Constants& k, Index i, const XS& xs,
                      const GS& gs, Use&& use) {
        const auto gd = gs + o.weight_decay * xs;
        if (o.momentum == S(0))
            return use(gd);
        auto bs = st.momentum_buffer.segment(i, gs.size()).array();
        const auto next = k.keep * bs + (S(1) - k.damp) * gd;  // b′
        if constexpr (Commit) {
            bs = next;
            if (o.nesterov)
                use(gd + o.momentum * bs);
            else
                use(bs);
        } else {
            if (o.nesterov)
                use(gd + o.momentum * next);
            else
                use(next);
        }
    }

    bool apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        return apply_at(this->state_, this->options(), this->options().lr(this->state_.step), x, g);
    }
};

}  // namespace scaltra
