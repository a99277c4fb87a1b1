// What the training drivers tell callbacks and return to the caller.
#pragma once

#include <cstdint>
#include <string_view>

#include "../core/types.hpp"

namespace scaltra {

/// Why a run ended.
enum class Status {
    converged,            ///< the gradient norm fell to the tolerance
    max_iterations,       ///< the iteration budget ran out
    stopped_by_callback,  ///< a callback hook returned true
    non_finite,           ///< the loss or gradient became NaN or infinite
};

constexpr std::string_view to_string(Status s) {
    switch (s) {
        case Status::converged:
            return "converged";
        case Status::max_iterations:
            return "max iterations";
        case Status::stopped_by_callback:
            return "stopped by callback";
        case Status::non_finite:
            return "non-finite";
    }
    return "unknown";
}

/// The run so far, as every callback hook sees it.
template <Real S>
struct Progress {
    std::int64_t iteration = 0;  ///< optimizer steps completed
    std::int64_t max_iterations = 0;
    std::int64_t epoch = 0;  ///< epochs completed
    std::int64_t objective_calls = 0;
    std::int64_t skipped_steps =
        0;                   ///< steps skipped on a non-finite value (NonFinitePolicy::skip)
    S loss = S(0);           ///< the latest loss evaluated (in on_step: the loss the step saw)
    S gradient_norm = S(0);  ///< ‖∇f‖ at the point of that loss (before any clipping)
    S epoch_loss = S(0);     ///< mean of the finite step losses of the last epoch (NaN if none)
    double elapsed_seconds = 0;
};

/// The outcome of `minimize`.
template <Real S>
struct MinimizeResult {
    S loss;           ///< at the final x
    S gradient_norm;  ///< at the final x
    std::int64_t iterations;
    std::int64_t objective_calls;
    std::int64_t skipped_steps;
    Status status;
    double elapsed_seconds;
};

}  // namespace scaltra
