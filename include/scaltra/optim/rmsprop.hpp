// RMSProp (Hinton, Lecture 6e of "Neural Networks for Machine Learning", 2012),
// centred variant (Graves, 2013), as torch.optim.RMSprop documents it:
//
//   g ← g + λx,   v ← αv + (1−α)g²
//   centred: ḡ ← αḡ + (1−α)g, ṽ = v − ḡ²; otherwise ṽ = v
//   momentum μ > 0: b ← μb + g / (√ṽ + ε), x ← x − ηb;  otherwise x ← x − ηg / (√ṽ + ε)
//
// One deliberate difference: ṽ is clamped at 0 before the square root, where
// rounding can make v − ḡ² slightly negative and torch would produce NaN.
#pragma once

#include <array>
#include <cstdint>
#include <tuple>

#include "optimizer_base.hpp"
#include "schedule.hpp"

namespace scaltra {

template <Real S>
struct RmsPropOptions {
    LearningRate<S> lr = 1e-2;
    S alpha = S(0.99);  ///< smoothing constant of the squared-gradient average
    S eps = S(1e-8);
    S weight_decay = S(0);
    S momentum = S(0);
    bool centered = false;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        using detail::Bound;
        lr.validate("lr");
        detail::require_in("alpha", alpha, S(0), Bound::closed, S(1), Bound::closed);
        detail::require_positive("eps", eps);  // 0 would make a zero gradient 0/0
        detail::require_nonnegative("weight_decay", weight_decay);
        detail::require_nonnegative("momentum", momentum);
    }
};

template <Real S>
struct RmsPropState {
    std::int64_t step = 0;
    Vec<S> square_avg;
    Vec<S> grad_avg;         ///< empty unless centered
    Vec<S> momentum_buffer;  ///< empty unless momentum > 0

    static constexpr std::array field_names{"step", "square_avg", "grad_avg", "momentum_buffer"};
    auto fields() { return std::tie(step, square_avg, grad_avg, momentum_buffer); }
    auto fields() const { return std::tie(step, square_avg, grad_avg, momentum_buffer); }

    void validate() const {
        detail::require_step_count(step);
        detail::require_state((square_avg.array() >= S(0)).all(), "square_avg",
                              "must be non-negative");
    }
};

template <Real S>
class RmsProp : public OptimizerBase<RmsProp<S>, S, RmsPropState<S>, RmsPropOptions<S>> {
    using Base = OptimizerBase<RmsProp<S>, S, RmsPropState<S>, RmsPropOptions<S>>;
    friend Base;

public:
    using typename Base::Options;
    using typename Base::State;
    static constexpr std::string_view kName = "RMSProp";

    using Base::Base;

    static State initial_state(const Layout& layout, const Options& options) {
        const Index n = layout.size();
        return {0, Vec<S>::Zero(n), Vec<S>::Zero(options.centered ? n : 0),
                Vec<S>::Zero(options.momentum > S(0) ? n : 0)};
    }

    /// One step of `st` at learning rate `lr` in place of the options' (APO's η);
    /// false when it took x out of the finite range (detail::FiniteProbe).
    static bool apply_at(State& st, const Options& o, S lr, Eigen::Ref<Vec<S>> x,
                         const Eigen::Ref<const Vec<S>>& g) {
        ++st.step;
        detail::FiniteProbe<S> probe;
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            auto xs = x.segment(i, len).array();
            piece<true>(st, o, i, xs, g.segment(i, len).array(),
                        [&](const auto& gd, const auto& denominator) {
                            if (o.momentum > S(0))
                                xs -= lr * st.momentum_buffer.segment(i, len).array();
                            else
                                xs -= lr * gd / denominator;
                        });
            probe.add(xs);
        });
        return probe.finite();
    }

    /// The direction d of the next step, leaving `st` as it is: that step at
    /// learning rate η is x ← x − ηd.
    static void direction(const State& st, const Options& o, const Eigen::Ref<const Vec<S>>& x,
                          const Eigen::Ref<const Vec<S>>& g, Eigen::Ref<Vec<S>> d) {
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            auto ds = d.segment(i, len).array();
            piece<false>(st, o, i, x.segment(i, len).array(), g.segment(i, len).array(),
                         [&](const auto& gd, const auto& denominator) {
                             if (o.momentum > S(0))
                                 ds = o.momentum * st.momentum_buffer.segment(i, len).array()
                                      + gd / denominator;
                             else
                                 ds = gd / denominator;
                         });
        });
    }

private:
    /// The averages of elements [i, i + len) after this step, handed to
    /// use(g + λx, √ṽ′ + ε); with Commit they are stored in the state first, the
    /// momentum buffer included (b ← μb + g/(√ṽ′ + ε)).
    template <bool Commit, class St, class XS, class GS, class Use>
    static void piece(St& st, const Options& o, Index i, const XS& xs, const GS& gs, Use&& use) {
        const Index len = gs.size();
        const S a = o.alpha;
        auto vs = st.square_avg.segment(i, len).array();
        const auto gd = gs + o.weight_decay * xs;
        const auto v_next = detail::saturated(a * vs + (S(1) - a) * gd.square());
        auto with = [&](const auto& denominator) {
            if constexpr (Commit)
                if (o.momentum > S(0)) {
                    auto bs = st.momentum_buffer.segment(i, len).array();
                    bs = o.momentum * bs + gd / denominator;
                }
            use(gd, denominator);
        };
        if constexpr (Commit) {
            vs = v_next;
            if (o.centered) {
                auto ga = st.grad_avg.segment(i, len).array();
                ga = a * ga + (S(1) - a) * gd;
                with((vs - ga.square()).max(S(0)).sqrt() + o.eps);
            } else {
                with(vs.sqrt() + o.eps);
            }
        } else if (o.centered) {
            const auto ga_next = a * st.grad_avg.segment(i, len).array() + (S(1) - a) * gd;
            with((v_next - ga_next.square()).max(S(0)).sqrt() + o.eps);
        } else {
            with(v_next.sqrt() + o.eps);
        }
    }

    bool apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        return apply_at(this->state_, this->options(), this->options().lr(this->state_.step), x, g);
    }
};

}  // namespace scaltra
