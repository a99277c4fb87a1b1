// minimize(opt, f, x, [options,] callbacks...): runs any Optimizer on an
// Objective until the gradient norm reaches the tolerance, the iteration budget
// runs out, a callback asks to stop, or the loss turns non-finite; returns a
// MinimizeResult. Numerical trouble is a status, not an exception: under
// NonFinitePolicy::raise the run ends with Status::non_finite; under skip the
// step is skipped (x unchanged), counted in `skipped_steps`, and the run goes on.
//
// Callbacks are trailing arguments (ensmallen's design), held by reference so the
// caller can read them afterwards; see hooks.hpp for the hooks they may define.
// `progress.loss` in on_step is the loss the step saw, at the point it started
// from (as torch's loss before optimizer.step()). Only that evaluation of a step
// reaches on_evaluate and can end the run as converged; a further call in the
// same step (APO's look-ahead) is counted in objective_calls and nothing else.
// A ModelObjective stays one: the optimizer sees its discrepancy.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/validate.hpp"
#include "driver_objective.hpp"
#include "hooks.hpp"
#include "progress.hpp"

namespace scaltra {

struct MinimizeOptions {
    std::int64_t max_iterations = 1000;
    double gradient_tolerance = 1e-6;  ///< converged when ‖∇f‖ ≤ this at the current x
    std::int64_t steps_per_epoch = 1;  ///< how often on_epoch_end runs

    void validate() const {
        detail::require_positive("max_iterations", max_iterations);
        detail::require_nonnegative("gradient_tolerance", gradient_tolerance);
        detail::require_positive("steps_per_epoch", steps_per_epoch);
    }
};

namespace detail {
/// Thrown by the driver's objective wrapper to end a step before the optimizer
/// moves: x then stays at the point whose gradient met the tolerance.
struct ConvergedSignal {};

template <class C>
concept NotOptions = !std::same_as<std::remove_cvref_t<C>, MinimizeOptions>;
}  // namespace detail

template <Optimizer Opt, Objective<typename Opt::Scalar> F, class... Callbacks>
MinimizeResult<typename Opt::Scalar> minimize(Opt& opt, F&& f,
                                              Eigen::Ref<Vec<typename Opt::Scalar>> x,
                                              const MinimizeOptions& options,
                                              Callbacks&&... callbacks) {
    using S = typename Opt::Scalar;
    static_assert((detail::valid_callback<std::remove_reference_t<Callbacks>, Opt, S> && ...),
                  "a callback passed to minimize has no hook, or a hook the driver cannot call "
                  "(see train/hooks.hpp)");
    options.validate();

    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    Progress<S> progress;
    progress.max_iterations = options.max_iterations;
    const Eigen::Ref<const Vec<S>> x_view(x);
    const Progress<S>& seen = progress;

    bool stop = false;
    bool in_step = false;  // convergence may end a step, not the final evaluation
    detail::ProgressRecorder<S> record(progress);
    auto evaluate = [&](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> grad) -> S {
        const auto loss = static_cast<S>(f(at, grad));
        if (!record.evaluated(loss, grad, elapsed()))
            return loss;  // a look-ahead within the step
        ((stop |= detail::invoke_hook<detail::on_evaluate_hook>(callbacks, opt, seen, at, grad)),
         ...);
        if (in_step && record.last_finite()
            && static_cast<double>(progress.gradient_norm) <= options.gradient_tolerance)
            throw detail::ConvergedSignal{};
        return loss;
    };
    auto compare = [&] {
        if constexpr (ModelObjective<std::remove_cvref_t<F>, S>)
            return [&](const Eigen::Ref<const Vec<S>>& u, const Eigen::Ref<const Vec<S>>& w,
                       Discrepancy rho, Eigen::Ref<Vec<S>> grad) {
                return f.discrepancy(u, w, rho, grad);
            };
        else
            return detail::NoDiscrepancy{};
    }();
    detail::DriverObjective<S, decltype(evaluate), decltype(compare)> objective(evaluate, compare);

    ((stop |= detail::invoke_hook<detail::on_begin_hook>(callbacks, opt, seen, x_view)), ...);
    Status status = stop ? Status::stopped_by_callback : Status::max_iterations;
    while (!stop && progress.iteration < options.max_iterations) {
        try {
            in_step = true;
            record.expect_evaluation();
            opt.step(x, objective);
            in_step = false;
        } catch (const detail::ConvergedSignal&) {
            status = Status::converged;
            break;
        } catch (const NonFinite&) {
            status = Status::non_finite;
            break;
        }
        record.stepped(elapsed());
        ((stop |= detail::invoke_hook<detail::on_step_hook>(callbacks, opt, seen, x_view)), ...);
        if (progress.iteration % options.steps_per_epoch == 0) {
            record.epoch_ended();
            ((stop |= detail::invoke_hook<detail::on_epoch_end_hook>(callbacks, opt, seen, x_view)),
             ...);
        }
        if (stop)
            status = Status::stopped_by_callback;
    }
    in_step = false;

    if (status != Status::converged) {
        // The final point's loss and gradient norm (one more objective call); the
        // converged point was just evaluated.
        Vec<S> grad = Vec<S>::Zero(x.size());
        record.expect_evaluation();
        objective(x_view, grad);
        if (!record.last_finite())
            status = Status::non_finite;
    }
    ((detail::invoke_hook<detail::on_end_hook>(callbacks, opt, seen, x_view)), ...);
    return MinimizeResult<S>::of(progress, status, elapsed());
}

/// minimize with the default MinimizeOptions.
template <Optimizer Opt, Objective<typename Opt::Scalar> F, detail::NotOptions... Callbacks>
MinimizeResult<typename Opt::Scalar> minimize(Opt& opt, F&& f,
                                              Eigen::Ref<Vec<typename Opt::Scalar>> x,
                                              Callbacks&&... callbacks) {
    return minimize(opt, std::forward<F>(f), x, MinimizeOptions{},
                    std::forward<Callbacks>(callbacks)...);
}

}  // namespace scaltra
