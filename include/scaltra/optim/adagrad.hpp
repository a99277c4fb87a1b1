// AdaGrad (Duchi, Hazan & Singer, 2011, "Adaptive Subgradient Methods for Online
// Learning and Stochastic Optimization"), as torch.optim.Adagrad documents it:
//
//   g ← g + λx,   η̃ = η / (1 + (t−1)·lr_decay),   s ← s + g²,   x ← x − η̃ g / (√s + ε)
//
// with s starting at initial_accumulator_value and t counting steps from 1.
#pragma once

#include <array>
#include <cstdint>
#include <tuple>

#include "optimizer_base.hpp"
#include "schedule.hpp"

namespace scaltra {

template <Real S>
struct AdaGradOptions {
    LearningRate<S> lr = 1e-2;
    S lr_decay = S(0);
    S weight_decay = S(0);
    S initial_accumulator_value = S(0);
    S eps = S(1e-10);
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        lr.validate("lr");
        detail::require_nonnegative("lr_decay", lr_decay);
        detail::require_nonnegative("weight_decay", weight_decay);
        detail::require_nonnegative("initial_accumulator_value", initial_accumulator_value);
        detail::require_positive("eps", eps);  // 0 would make a zero gradient 0/0
    }
};

template <Real S>
struct AdaGradState {
    std::int64_t step = 0;
    Vec<S> sum;  ///< accumulated squared gradients

    static constexpr std::array field_names{"step", "sum"};
    auto fields() { return std::tie(step, sum); }
    auto fields() const { return std::tie(step, sum); }

    void validate() const {
        detail::require_step_count(step);
        detail::require_state((sum.array() >= S(0)).all(), "sum", "must be non-negative");
    }
};

template <Real S>
class AdaGrad : public OptimizerBase<AdaGrad<S>, S, AdaGradState<S>, AdaGradOptions<S>> {
    using Base = OptimizerBase<AdaGrad<S>, S, AdaGradState<S>, AdaGradOptions<S>>;
    friend Base;

public:
    using typename Base::Options;
    static constexpr std::string_view kName = "AdaGrad";

    using Base::Base;

private:
    static AdaGradState<S> initial_state(const Layout& layout, const Options& options) {
        return {0, Vec<S>::Constant(layout.size(), options.initial_accumulator_value)};
    }

    bool apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        auto& st = this->state_;
        const Options& o = this->options();
        const S lr = o.lr(st.step);
        ++st.step;
        const S clr = lr / (S(1) + S(st.step - 1) * o.lr_decay);
        const S eps = o.eps, wd = o.weight_decay;
        detail::FiniteProbe<S> probe;
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            auto xs = x.segment(i, len).array();
            auto ss = st.sum.segment(i, len).array();
            const auto gd = g.segment(i, len).array() + wd * xs;
            ss = detail::saturated(ss + gd.square());
            xs -= clr * gd / (ss.sqrt() + eps);
            probe.add(xs);
        });
        return probe.finite();
    }
};

}  // namespace scaltra
