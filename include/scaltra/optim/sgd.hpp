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
    static constexpr std::string_view kName = "SGD";

    using Base::Base;

private:
    static SgdState<S> initial_state(const Layout& layout, const Options& options) {
        return {0, Vec<S>::Zero(options.momentum != S(0) ? layout.size() : 0)};
    }

    void apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        auto& st = this->state_;
        const Options& o = this->options();
        const S lr = o.lr(st.step);
        ++st.step;
        const S mu = o.momentum, wd = o.weight_decay;
        const S damp = st.step == 1 ? S(0) : o.dampening;  // b ← g on the first step
        const S keep = st.step == 1 ? S(0) : mu;
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            auto xs = x.segment(i, len).array();
            const auto gd = g.segment(i, len).array() + wd * xs;
            if (mu == S(0)) {
                xs -= lr * gd;
                return;
            }
            auto bs = st.momentum_buffer.segment(i, len).array();
            bs = keep * bs + (S(1) - damp) * gd;
            if (o.nesterov)
                xs -= lr * (gd + mu * bs);
            else
                xs -= lr * bs;
        });
    }
};

}  // namespace scaltra
