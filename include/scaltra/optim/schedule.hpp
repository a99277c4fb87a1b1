// Learning rates as functions of the step index, accepted wherever a learning
// rate is: a plain number, one of the schedules below, or any callable
// `double(std::int64_t t)`. t counts the optimizer's steps from 0, so lr(0) is the
// rate of the first step (as torch.optim's schedulers, stepped once per step).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"

namespace scaltra {

template <class T>
concept Number = std::is_arithmetic_v<T>;

/// A callable t ↦ lr(t) of the step index.
template <class F>
concept ScheduleFunction = !Number<F> && std::is_invocable_r_v<double, const F&, std::int64_t>;

/// A constant learning rate or a schedule t ↦ lr(t).
template <Real S>
class LearningRate {
public:
    template <Number T>
    LearningRate(T value) : value_(static_cast<S>(value)) {}  // NOLINT: numbers convert

    template <ScheduleFunction F>
    LearningRate(F schedule)  // NOLINT: schedules convert
        : schedule_(
            [s = std::move(schedule)](std::int64_t t) { return static_cast<double>(s(t)); }) {}

    /// The rate of step t (from 0). A schedule value that is negative or not
    /// finite throws InvalidArgument.
    S operator()(std::int64_t t) const {
        if (!schedule_)
            return value_;
        const auto v = static_cast<S>(schedule_(t));
        if (!(v >= S(0)) || !std::isfinite(v))
            throw InvalidArgument(detail::concat("Invalid learning rate: the schedule gave ", v,
                                                 " at step ", t, ", must be in [0, inf)"));
        return v;
    }

    bool is_constant() const { return !schedule_; }

    /// Checks a constant rate (schedules are checked when built and when evaluated).
    void validate(std::string_view name) const {
        if (!schedule_)
            detail::require_nonnegative(name, value_);
    }

private:
    S value_ = S(0);
    std::function<double(std::int64_t)> schedule_;
};

namespace schedule {

/// lr · γ^⌊t / step_size⌋ (torch.optim.lr_scheduler.StepLR).
class StepDecay {
public:
    StepDecay(double lr, std::int64_t step_size, double gamma)
        : lr_(lr), gamma_(gamma), step_size_(step_size) {
        detail::require_nonnegative("lr", lr_);
        detail::require_positive("step_size", step_size_);
        detail::require_positive("gamma", gamma_);
    }
    double operator()(std::int64_t t) const {
        return lr_ * std::pow(gamma_, static_cast<double>(t / step_size_));
    }

private:
    double lr_, gamma_;
    std::int64_t step_size_;
};

/// lr · γ^t (ExponentialLR).
class Exponential {
public:
    Exponential(double lr, double gamma) : lr_(lr), gamma_(gamma) {
        detail::require_nonnegative("lr", lr_);
        detail::require_positive("gamma", gamma_);
    }
    double operator()(std::int64_t t) const {
        return lr_ * std::pow(gamma_, static_cast<double>(t));
    }

private:
    double lr_, gamma_;
};

/// lr_min + ½(lr − lr_min)(1 + cos(π t / total_steps)) for t ≤ total_steps, then
/// lr_min (CosineAnnealingLR's closed form, held at its minimum instead of rising again).
class Cosine {
public:
    Cosine(double lr, std::int64_t total_steps, double lr_min = 0.0)
        : lr_(lr), lr_min_(lr_min), total_steps_(total_steps) {
        detail::require_nonnegative("lr", lr_);
        detail::require_positive("total_steps", total_steps_);
        detail::require_in("lr_min", lr_min_, 0.0, detail::Bound::closed, lr_,
                           detail::Bound::closed);
    }
    double operator()(std::int64_t t) const {
        const double progress =
            static_cast<double>(std::min(t, total_steps_)) / static_cast<double>(total_steps_);
        return lr_min_ + 0.5 * (lr_ - lr_min_) * (1.0 + std::cos(std::numbers::pi * progress));
    }

private:
    double lr_, lr_min_;
    std::int64_t total_steps_;
};

/// A fixed rate, as a schedule (for composing with linear_warmup).
class Constant {
public:
    explicit Constant(double lr) : lr_(lr) { detail::require_nonnegative("lr", lr_); }
    double operator()(std::int64_t) const { return lr_; }

private:
    double lr_;
};

/// inner(t) scaled by a factor rising linearly from start_factor at t = 0 to 1 at
/// t = warmup_steps (LinearLR with end_factor 1), then inner(t) unchanged.
template <class Inner>
class LinearWarmup {
public:
    LinearWarmup(std::int64_t warmup_steps, Inner inner, double start_factor = 1.0 / 3.0)
        : inner_(std::move(inner)), warmup_steps_(warmup_steps), start_factor_(start_factor) {
        detail::require_positive("warmup_steps", warmup_steps_);
        detail::require_in("start_factor", start_factor_, 0.0, detail::Bound::closed, 1.0,
                           detail::Bound::closed);
    }
    double operator()(std::int64_t t) const {
        const double ramp =
            static_cast<double>(std::min(t, warmup_steps_)) / static_cast<double>(warmup_steps_);
        return (start_factor_ + (1.0 - start_factor_) * ramp) * static_cast<double>(inner_(t));
    }

private:
    Inner inner_;
    std::int64_t warmup_steps_;
    double start_factor_;
};

inline Constant constant(double lr) {
    return Constant(lr);
}

inline StepDecay step_decay(double lr, std::int64_t step_size, double gamma) {
    return {lr, step_size, gamma};
}

inline Exponential exponential(double lr, double gamma) {
    return {lr, gamma};
}

inline Cosine cosine(double lr, std::int64_t total_steps, double lr_min = 0.0) {
    return {lr, total_steps, lr_min};
}

/// Linear warm-up over `warmup_steps` in front of `inner`, a schedule or a number.
template <class Inner>
auto linear_warmup(std::int64_t warmup_steps, Inner inner, double start_factor = 1.0 / 3.0) {
    if constexpr (std::is_arithmetic_v<Inner>) {
        return LinearWarmup<Constant>(warmup_steps, Constant(static_cast<double>(inner)),
                                      start_factor);
    } else {
        return LinearWarmup<Inner>(warmup_steps, std::move(inner), start_factor);
    }
}

}  // namespace schedule
}  // namespace scaltra
