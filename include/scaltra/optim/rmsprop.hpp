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

#include "optimizer_base.hpp"
#include "schedule.hpp"

#include <array>
#include <cstdint>
#include <tuple>

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
};

template <Real S>
class RmsProp : public OptimizerBase<RmsProp<S>, S, RmsPropState<S>> {
    using Base = OptimizerBase<RmsProp<S>, S, RmsPropState<S>>;
    friend Base;

public:
    using Options = RmsPropOptions<S>;
    static constexpr std::string_view kName = "RMSProp";

    explicit RmsProp(Layout layout, Options options = {})
        : Base(std::move(layout)), options_(std::move(options)) {
        options_.validate();
        this->state_ = initial_state();
    }

    const Options& options() const { return options_; }

private:
    RmsPropState<S> initial_state() const {
        const Index n = this->layout().size();
        return {0, Vec<S>::Zero(n), Vec<S>::Zero(options_.centered ? n : 0),
                Vec<S>::Zero(options_.momentum > S(0) ? n : 0)};
    }

    void apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        auto& st = this->state_;
        const S lr = options_.lr(st.step);
        ++st.step;
        const S a = options_.alpha, eps = options_.eps, wd = options_.weight_decay;
        const S mu = options_.momentum;
        detail::for_each_chunk(x.size(), [&](Index i, Index len) {
            auto xs = x.segment(i, len).array();
            auto vs = st.square_avg.segment(i, len).array();
            const auto gd = g.segment(i, len).array() + wd * xs;
            vs = a * vs + (S(1) - a) * gd.square();
            auto step_of = [&](const auto& denom) {
                if (mu > S(0)) {
                    auto bs = st.momentum_buffer.segment(i, len).array();
                    bs = mu * bs + gd / denom;
                    xs -= lr * bs;
                } else {
                    xs -= lr * gd / denom;
                }
            };
            if (options_.centered) {
                auto ga = st.grad_avg.segment(i, len).array();
                ga = a * ga + (S(1) - a) * gd;
                step_of((vs - ga.square()).max(S(0)).sqrt() + eps);
            } else {
                step_of(vs.sqrt() + eps);
            }
        });
    }

    Options options_;
};

}  // namespace scaltra
