// What the training drivers tell callbacks and return to the caller.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "../core/types.hpp"
#include "../core/validate.hpp"

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

/// What `fit` measures at the end of an epoch on its validation and test sets.
/// Which sets were given is in `Progress::has_validation` / `has_test`; a metric
/// of a set not given is NaN (and so is one the model made NaN).
struct EpochMetrics {
    double validation_loss = std::numeric_limits<double>::quiet_NaN();
    double validation_accuracy = std::numeric_limits<double>::quiet_NaN();
    double test_loss = std::numeric_limits<double>::quiet_NaN();
    double test_accuracy = std::numeric_limits<double>::quiet_NaN();
};

/// The run so far, as every callback hook sees it.
template <Real S>
struct Progress {
    std::int64_t iteration = 0;  ///< optimizer steps completed
    std::int64_t max_iterations = 0;
    std::int64_t epoch = 0;       ///< epochs completed
    std::int64_t max_epochs = 0;  ///< fit's epoch budget (0 under minimize)
    std::int64_t objective_calls = 0;
    std::int64_t skipped_steps =
        0;                   ///< steps skipped on a non-finite value (NonFinitePolicy::skip)
    S loss = S(0);           ///< the latest loss evaluated (in on_step: the loss the step saw)
    S gradient_norm = S(0);  ///< ‖∇f‖ at the point of that loss (before any clipping)
    S epoch_loss = S(0);     ///< mean of the finite step losses of the last epoch (NaN if none)
    EpochMetrics metrics;    ///< of the last completed epoch (fit only)
    bool has_validation = false;  ///< fit evaluates a validation set after every epoch
    bool has_test = false;        ///< fit evaluates a test set after every epoch
    double elapsed_seconds = 0;
};

namespace detail {
/// The bookkeeping both drivers do around each objective call, each step and
/// each epoch's end, on the Progress their callbacks see.
template <Real S>
class ProgressRecorder {
public:
    explicit ProgressRecorder(Progress<S>& progress) : p_(progress) {}

    /// The next objective call is a step's own evaluation (or the driver's final
    /// one): what on_evaluate hooks and Progress report.
    void expect_evaluation() { own_call_ = true; }

    /// After an objective call, counted in every case. The first since
    /// expect_evaluation() records its loss and gradient norm and returns true;
    /// a further call in the same step (APO's look-ahead at another point, same
    /// batch) is only counted and returns false.
    bool evaluated(S loss, const Eigen::Ref<Vec<S>>& grad, double elapsed) {
        ++p_.objective_calls;
        p_.elapsed_seconds = elapsed;
        if (!own_call_)
            return false;
        own_call_ = false;
        p_.loss = loss;
        p_.gradient_norm = grad.norm();
        if (std::isinf(p_.gradient_norm) && all_finite(grad))  // the sum of squares overflowed
            p_.gradient_norm = grad.stableNorm();
        last_finite_ = std::isfinite(loss) && all_finite(grad);
        return true;
    }

    /// After a completed step: counts it, and its loss into the epoch's mean, or as
    /// skipped when the optimizer skipped a non-finite value.
    void stepped(double elapsed) {
        ++p_.iteration;
        p_.elapsed_seconds = elapsed;
        if (last_finite_) {
            sum_ += p_.loss;
            ++count_;
        } else {
            ++p_.skipped_steps;
        }
    }

    /// At an epoch's end: the epoch's mean finite step loss (NaN when no step was
    /// finite) into Progress::epoch_loss, and a new epoch begins.
    void epoch_ended() {
        ++p_.epoch;
        p_.epoch_loss =
            count_ > 0 ? sum_ / static_cast<S>(count_) : std::numeric_limits<S>::quiet_NaN();
        sum_ = S(0);
        count_ = 0;
    }

    /// The latest recorded loss and gradient were finite.
    bool last_finite() const { return last_finite_; }

private:
    Progress<S>& p_;
    bool own_call_ = false;
    bool last_finite_ = true;
    S sum_ = S(0);
    std::int64_t count_ = 0;
};
}  // namespace detail

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

    /// The result of a run that ended with `progress` (at the final x) and `status`.
    static MinimizeResult of(const Progress<S>& progress, Status status, double seconds) {
        return {progress.loss,
                progress.gradient_norm,
                progress.iteration,
                progress.objective_calls,
                progress.skipped_steps,
                status,
                seconds};
    }
};

}  // namespace scaltra
