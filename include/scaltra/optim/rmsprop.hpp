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
        detail::require_nonnegative("eps", eps);
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
    static constexpr std::string_view kName = "RMSProp";

    using Base::Base;

private:
    static RmsPropState<S> initial_state(const Layout& layout, const Options& options) {
        const Index n = layout.size();
        return {0, Vec<S>::Zero(n), Vec<S>::Zero(options.centered ? n : 0),
                Vec<S>::Zero(options.momentum > S(0) ? n : 0)};
    }

    void apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        auto& st = this->state_;
        const Options& o = this->options();
        const S lr = o.lr(st.step);
        ++st.step;
        const S a = o.alpha, eps = o.eps, wd = o.weight_decay;
        const S mu = o.momentum;
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            auto xs = x.segment(i, len).array();
            auto vs = st.square_avg.segment(i, len).array();
            const auto gd = g.segment(i, len).array() + wd * xs;
            vs = detail::saturated(a * vs + (S(1) - a) * gd.square());
            auto step_of = [&](const auto& denom) {
                if (mu > S(0)) {
                    auto bs = st.momentum_buffer.segment(i, len).array();
                    bs = mu * bs + gd / denom;
                    xs -= lr * bs;
                } else {
                    xs -= lr * gd / denom;
                }
            };
            if (o.centered) {
                auto ga = st.grad_avg.segment(i, len).array();
                ga = a * ga + (S(1) - a) * gd;
                step_of((vs - ga.square()).max(S(0)).sqrt() + eps);
            } else {
                step_of(vs.sqrt() + eps);
            }
        });
    }
};

}  // namespace scaltra
