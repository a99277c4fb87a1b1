// minimize(opt, f, x, [options,] callbacks...): runs any Optimizer on an
// Objective until the gradient norm reaches the tolerance, the iteration budget
// runs out, a callback asks to stop, or the loss turns non-finite; returns a
// MinimizeResult (numerical trouble is a status, not an exception).
//
// Callbacks are trailing arguments (ensmallen's design), held by reference so the
// caller can read them afterwards. A callback defines any of the hooks
//
//   on_begin(opt, progress, x)              before the first step
//   on_evaluate(opt, progress, x, grad)     after each objective call; may change grad
//   on_step(opt, progress, x)               after each step (x is the new point)
//   on_epoch_end(opt, progress, x)          every options.steps_per_epoch steps
//   on_end(opt, progress, x)                once, after the final evaluation
//
// with `progress` a Progress<S>, x an Eigen::Ref<const Vec<S>> and grad an
// Eigen::Ref<Vec<S>>. A hook returning `true` stops the run. A callback with none
// of these hooks, or with a hook the driver cannot call, fails to compile.
#pragma once

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/validate.hpp"
#include "progress.hpp"

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace scaltra {

struct MinimizeOptions {
    std::int64_t max_iterations = 1000;
    double gradient_tolerance = 1e-6;  ///< converged when ‖∇f‖ ≤ this
    std::int64_t steps_per_epoch = 1;  ///< how often on_epoch_end runs

    void validate() const {
        detail::require_positive("max_iterations", max_iterations);
        detail::require_nonnegative("gradient_tolerance", gradient_tolerance);
        detail::require_positive("steps_per_epoch", steps_per_epoch);
    }
};

namespace detail {

// Each hook: call it when the callback can be called with the driver's arguments;
// when it has a (non-template) member of that name that cannot, refuse to compile
// rather than ignore it silently. The result is true when the hook asks to stop.
#define SCALTRA_DEFINE_HOOK(hook)                                                              \
    template <class C, class... Args>                                                         \
    bool call_##hook(C& c, Args&&... args) {                                                  \
        if constexpr (requires { c.hook(std::forward<Args>(args)...); }) {                     \
            if constexpr (std::is_same_v<decltype(c.hook(std::forward<Args>(args)...)), bool>) \
                return c.hook(std::forward<Args>(args)...);                                   \
            else                                                                              \
                c.hook(std::forward<Args>(args)...);                                          \
        } else {                                                                              \
            static_assert(!requires { &std::remove_cvref_t<C>::hook; },                       \
                          "callback has a " #hook " hook with a signature the driver cannot call"); \
        }                                                                                     \
        return false;                                                                         \
    }                                                                                         \
    template <class C>                                                                        \
    constexpr bool has_##hook = requires { &std::remove_cvref_t<C>::hook; };

SCALTRA_DEFINE_HOOK(on_begin)
SCALTRA_DEFINE_HOOK(on_evaluate)
SCALTRA_DEFINE_HOOK(on_step)
SCALTRA_DEFINE_HOOK(on_epoch_end)
SCALTRA_DEFINE_HOOK(on_end)
#undef SCALTRA_DEFINE_HOOK

template <class C, class Opt, class S>
concept HasAnyHook = requires(C& c, Opt& opt, const Progress<S>& p,
                              const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>>& g) {
    requires has_on_begin<C> || has_on_evaluate<C> || has_on_step<C> || has_on_epoch_end<C> ||
                 has_on_end<C> || requires { c.on_begin(opt, p, x); } ||
                 requires { c.on_evaluate(opt, p, x, g); } || requires { c.on_step(opt, p, x); } ||
                 requires { c.on_epoch_end(opt, p, x); } || requires { c.on_end(opt, p, x); };
};

}  // namespace detail

template <Optimizer Opt, class F, class... Callbacks>
    requires Objective<F, typename Opt::Scalar>
MinimizeResult<typename Opt::Scalar> minimize(Opt& opt, F&& f, Eigen::Ref<Vec<typename Opt::Scalar>> x,
                                              const MinimizeOptions& options,
                                              Callbacks&&... callbacks) {
    using S = typename Opt::Scalar;
    static_assert((detail::HasAnyHook<std::remove_cvref_t<Callbacks>, Opt, S> && ...),
                  "a callback passed to minimize has none of the hooks on_begin, on_evaluate, "
                  "on_step, on_epoch_end, on_end");
    options.validate();

    const auto start = std::chrono::steady_clock::now();
    Progress<S> progress;
    progress.max_iterations = options.max_iterations;
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    const Eigen::Ref<const Vec<S>> x_view(x);

    bool stop = false;
    auto objective = [&](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> grad) -> S {
        ++progress.objective_calls;
        const auto loss = static_cast<S>(f(at, grad));
        progress.loss = loss;
        progress.gradient_norm = grad.norm();
        progress.elapsed_seconds = elapsed();
        ((stop |= detail::call_on_evaluate(callbacks, opt, std::as_const(progress), at, grad)), ...);
        return loss;
    };

    ((stop |= detail::call_on_begin(callbacks, opt, std::as_const(progress), x_view)), ...);
    Status status = stop ? Status::stopped_by_callback : Status::max_iterations;
    S epoch_sum = S(0);
    while (!stop && progress.iteration < options.max_iterations) {
        try {
            opt.step(x, objective);
        } catch (const NonFinite&) {
            status = Status::non_finite;
            break;
        }
        ++progress.iteration;
        progress.elapsed_seconds = elapsed();
        epoch_sum += progress.loss;
        const bool converged = static_cast<double>(progress.gradient_norm) <= options.gradient_tolerance;
        ((stop |= detail::call_on_step(callbacks, opt, std::as_const(progress), x_view)), ...);
        if (progress.iteration % options.steps_per_epoch == 0) {
            ++progress.epoch;
            progress.epoch_loss = epoch_sum / static_cast<S>(options.steps_per_epoch);
            epoch_sum = S(0);
            ((stop |= detail::call_on_epoch_end(callbacks, opt, std::as_const(progress), x_view)),
             ...);
        }
        if (converged) {
            status = Status::converged;
            break;
        }
        if (stop) status = Status::stopped_by_callback;
    }

    // The final point's loss and gradient norm (one more objective call).
    Vec<S> grad(x.size());
    objective(x_view, grad);
    if (!std::isfinite(progress.loss) || !std::isfinite(progress.gradient_norm))
        status = Status::non_finite;
    (detail::call_on_end(callbacks, opt, std::as_const(progress), x_view), ...);
    return {progress.loss,       progress.gradient_norm, progress.iteration,
            progress.objective_calls, status,            elapsed()};
}

/// minimize with the default MinimizeOptions.
template <Optimizer Opt, class F, class... Callbacks>
    requires Objective<F, typename Opt::Scalar> &&
             (!std::same_as<std::remove_cvref_t<Callbacks>, MinimizeOptions> && ...)
MinimizeResult<typename Opt::Scalar> minimize(Opt& opt, F&& f, Eigen::Ref<Vec<typename Opt::Scalar>> x,
                                              Callbacks&&... callbacks) {
    return minimize(opt, std::forward<F>(f), x, MinimizeOptions{},
                    std::forward<Callbacks>(callbacks)...);
}

}  // namespace scaltra
