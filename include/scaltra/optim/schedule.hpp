// Learning rates as functions of the step index, accepted wherever a learning
// rate is: a plain number, one of the schedules below, or any callable
// `double(std::int64_t t)`. t counts the optimizer's steps from 0, so lr(0) is the
// rate of the first step (as torch.optim's schedulers, stepped once per step).
#pragma once

#include "../core/error.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <string_view>
#include <type_traits>
#include <utility>

namespace scaltra {

/// A constant learning rate or a schedule t ↦ lr(t).
template <Real S>
class LearningRate {
public:
    template <class T>
        requires std::is_arithmetic_v<T>
    LearningRate(T value) : value_(static_cast<S>(value)) {}  // NOLINT: numbers convert

    template <class F>
        requires(!std::is_arithmetic_v<F> && std::is_invocable_r_v<double, const F&, std::int64_t>)
    LearningRate(F schedule)  // NOLINT: schedules convert
        : schedule_([s = std::move(schedule)](std::int64_t t) { return static_cast<double>(s(t)); }) {}

    /// The rate of step t (from 0). A schedule value that is negative or not
    /// finite throws InvalidArgument.
    S operator()(std::int64_t t) const {
        if (!schedule_) return value_;
        const auto v = static_cast<S>(schedule_(t));
        if (!(v >= S(0)) || !std::isfinite(v))
            throw InvalidArgument(detail::concat("Invalid learning rate: the schedule gave ", v,
                                                 " at step ", t, ", must be in [0, inf)"));
        return v;
    }

    bool is_constant() const { return !schedule_; }

    /// Checks a constant rate (schedules are checked when built and when evaluated).
    void validate(std::string_view name) const {
        if (!schedule_) detail::require_nonnegative(name, value_);
    }

private:
    S value_ = S(0);
    std::function<double(std::int64_t)> schedule_;
};

namespace schedule {

/// lr · γ^⌊t / step_size⌋ (torch.optim.lr_scheduler.StepLR).
struct StepDecay {
    double lr, gamma;
    std::int64_t step_size;
    double operator()(std::int64_t t) const {
        return lr * std::pow(gamma, static_cast<double>(t / step_size));
    }
};

/// lr · γ^t (ExponentialLR).
struct Exponential {
    double lr, gamma;
    double operator()(std::int64_t t) const { return lr * std::pow(gamma, static_cast<double>(t)); }
};

/// lr_min + ½(lr − lr_min)(1 + cos(π t / total_steps)) for t ≤ total_steps, then
/// lr_min (CosineAnnealingLR's closed form, held at its minimum instead of rising again).
struct Cosine {
    double lr, lr_min;
    std::int64_t total_steps;
    double operator()(std::int64_t t) const {
        const double progress =
            static_cast<double>(std::min(t, total_steps)) / static_cast<double>(total_steps);
        return lr_min + 0.5 * (lr - lr_min) * (1.0 + std::cos(std::numbers::pi * progress));
    }
};

/// inner(t) scaled by a factor rising linearly from start_factor at t = 0 to 1 at
/// t = warmup_steps (LinearLR with end_factor 1), then inner(t) unchanged.
template <class Inner>
struct LinearWarmup {
    Inner inner;
    std::int64_t warmup_steps;
    double start_factor;
    double operator()(std::int64_t t) const {
        const double ramp = static_cast<double>(std::min(t, warmup_steps)) /
                            static_cast<double>(warmup_steps);
        return (start_factor + (1.0 - start_factor) * ramp) * static_cast<double>(inner(t));
    }
};

/// A fixed rate, as a schedule (for composing with linear_warmup).
struct Constant {
    double lr;
    double operator()(std::int64_t) const { return lr; }
};

inline Constant constant(double lr) {
    detail::require_nonnegative("lr", lr);
    return {lr};
}

inline StepDecay step_decay(double lr, std::int64_t step_size, double gamma) {
    detail::require_nonnegative("lr", lr);
    detail::require_positive("step_size", step_size);
    detail::require_positive("gamma", gamma);
    return {lr, gamma, step_size};
}

inline Exponential exponential(double lr, double gamma) {
    detail::require_nonnegative("lr", lr);
    detail::require_positive("gamma", gamma);
    return {lr, gamma};
}

inline Cosine cosine(double lr, std::int64_t total_steps, double lr_min = 0.0) {
    detail::require_nonnegative("lr", lr);
    detail::require_positive("total_steps", total_steps);
    detail::require_in("lr_min", lr_min, 0.0, detail::Bound::closed, lr, detail::Bound::closed);
    return {lr, lr_min, total_steps};
}

/// Linear warm-up over `warmup_steps` in front of `inner`, a schedule or a number.
template <class Inner>
auto linear_warmup(std::int64_t warmup_steps, Inner inner, double start_factor = 1.0 / 3.0) {
    detail::require_positive("warmup_steps", warmup_steps);
    detail::require_in("start_factor", start_factor, 0.0, detail::Bound::closed, 1.0,
                       detail::Bound::closed);
    if constexpr (std::is_arithmetic_v<Inner>) {
        return LinearWarmup<Constant>{constant(static_cast<double>(inner)), warmup_steps,
                                      start_factor};
    } else {
        return LinearWarmup<Inner>{std::move(inner), warmup_steps, start_factor};
    }
}

}  // namespace schedule
}  // namespace scaltra
