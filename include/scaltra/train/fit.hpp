// fit(model, opt, w, train, options, callbacks...): trains a classifier for a
// number of epochs of shuffled minibatches, evaluates it on the validation and
// test sets after every epoch, and returns the history (Keras's `model.fit`).
//
// The parameters are the caller's flat vector `w`, as everywhere in scaltra; the
// model supplies the minibatch loss and the evaluation. Callbacks are those of
// `minimize` (hooks.hpp); on_epoch_end sees the epoch's metrics in
// `progress.metrics` and `progress.epoch_loss` (the mean minibatch loss).
// Every set and option is checked before the first step, and the callbacks'
// on_begin runs before it too, so bad input leaves w and the optimizer as they were.
// When the model can compare its outputs at two parameter vectors (nn::Mlp's
// output_discrepancy), the objective is a ModelObjective: APO's function-space
// term is taken on B′ = the batch of the same index in a second shuffle of the
// training set (seeded apart from the first), gathered only when asked for.
// Only a step's own evaluation reaches on_evaluate and the recorded loss; APO's
// look-ahead calls are counted in objective_calls.
// Resuming: load a checkpoint (checkpoint.hpp), pass its epoch as
// `initial_epoch` with the same seed, batch size and training set, and the run
// continues bit-identically, since an epoch's batches depend only on the seed
// and the epoch number (iterations count on from initial_epoch × steps per epoch).
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/validate.hpp"
#include "../data/labelled_set.hpp"
#include "../data/minibatches.hpp"
#include "driver_objective.hpp"
#include "hooks.hpp"
#include "progress.hpp"

namespace scaltra {

/// A classifier over a flat parameter vector, as nn::Mlp: its input size and
/// number of classes, a minibatch loss whose gradient is added to grad, and an
/// evaluation (mean loss, accuracy) of a set.
template <class M, class S>
concept Classifier = requires(M& m, const Eigen::Ref<const Vec<S>>& w,
                              const Eigen::Ref<const Mat<S>>& inputs, std::span<const Index> labels,
                              Eigen::Ref<Vec<S>>& grad) {
    { m.input_size() } -> std::convertible_to<Index>;
    { m.output_size() } -> std::convertible_to<Index>;
    { m.loss_and_grad(w, inputs, labels, grad) } -> std::convertible_to<S>;
    { m.evaluate(w, inputs, labels).loss } -> std::convertible_to<double>;
    { m.evaluate(w, inputs, labels).accuracy } -> std::convertible_to<double>;
};

/// A model that can give ρ(f(x̃; u), f(x̃; w)) over inputs x̃ and its gradient with
/// respect to u (APO's function-space term), as nn::Mlp::output_discrepancy.
template <class M, class S>
concept OutputComparer = requires(M& m, const Eigen::Ref<const Vec<S>>& u,
                                  const Eigen::Ref<const Vec<S>>& w,
                                  const Eigen::Ref<const Mat<S>>& inputs, Discrepancy rho,
                                  Eigen::Ref<Vec<S>>& grad) {
    { m.output_discrepancy(u, w, inputs, rho, grad) } -> std::convertible_to<S>;
};

template <Real S>
struct FitOptions {
    std::int64_t epochs = 10;  ///< the epoch to stop after (counting initial_epoch)
    Index batch_size = 128;
    std::uint64_t seed = 0;          ///< the minibatch order
    std::int64_t initial_epoch = 0;  ///< epochs already done (to resume from a checkpoint)
    const data::LabelledSet<S>* validation = nullptr;  ///< evaluated after every epoch
    const data::LabelledSet<S>* test = nullptr;        ///< evaluated after every epoch

    void validate() const {
        detail::require_positive("epochs", epochs);
        detail::require_positive("batch_size", batch_size);
        detail::require_in("initial_epoch", initial_epoch, std::int64_t{0}, detail::Bound::closed,
                           epochs, detail::Bound::closed);
    }
};

/// One line of the training history.
struct EpochRecord {
    std::int64_t epoch;      ///< 1-based
    std::int64_t iteration;  ///< optimizer steps completed by its end
    double train_loss;       ///< mean of the epoch's finite minibatch losses
    EpochMetrics metrics;
    double train_seconds;  ///< wall time of the epoch's steps (callbacks included, evaluation not)
    double elapsed_seconds;  ///< since fit began, at the epoch's end
};

struct FitResult {
    std::vector<EpochRecord> history;  ///< the epochs completed in this call
    std::int64_t iterations;           ///< steps completed, those before initial_epoch included
    std::int64_t skipped_steps;        ///< in this call
    Status status;                     ///< max_iterations when every epoch ran
    double elapsed_seconds;            ///< of this call
};

namespace detail {
/// A set fit may use with `model`: examples, one label each in [0, classes), and
/// the model's input size. Checked before anything is trained.
template <class Model, class S>
void require_classification_set(const Model& model, const data::LabelledSet<S>& set,
                                std::string_view which) {
    if (set.size() == 0)
        throw InvalidArgument(concat("fit: the ", which, " set is empty"));
    if (static_cast<Index>(set.labels.size()) != set.size())
        throw DimensionMismatch(concat("fit: ", set.labels.size(), " labels for ", set.size(), " ",
                                       which, " examples"));
    if (set.inputs.rows() != static_cast<Index>(model.input_size()))
        throw DimensionMismatch(concat("fit: the ", which, " inputs have ", set.inputs.rows(),
                                       " features, the model takes ", model.input_size()));
    const auto classes = static_cast<Index>(model.output_size());
    for (Index label : set.labels)
        if (label < 0 || label >= classes)
            throw InvalidArgument(concat("fit: a ", which, " label is ", label,
                                         ", outside the model's classes [0, ", classes, ")"));
}
}  // namespace detail

template <Optimizer Opt, Classifier<typename Opt::Scalar> Model, class... Callbacks>
FitResult fit(Model& model, Opt& opt, Eigen::Ref<Vec<typename Opt::Scalar>> w,
              const data::LabelledSet<typename Opt::Scalar>& train,
              const FitOptions<typename Opt::Scalar>& options, Callbacks&&... callbacks) {
    using S = typename Opt::Scalar;
    static_assert((detail::valid_callback<std::remove_reference_t<Callbacks>, Opt, S> && ...),
                  "a callback passed to fit has no hook, or a hook the driver cannot call "
                  "(see train/hooks.hpp)");
    // Everything is checked before the first step: bad input leaves w and opt as they were.
    options.validate();
    detail::require_classification_set(model, train, "training");
    if (options.validation != nullptr)
        detail::require_classification_set(model, *options.validation, "validation");
    if (options.test != nullptr)
        detail::require_classification_set(model, *options.test, "test");
    if constexpr (requires { model.layout().size(); })
        detail::require_size("fit parameters", w.size(), model.layout().size());
    if constexpr (requires { opt.layout().size(); })
        detail::require_size("the optimizer's layout", opt.layout().size(), w.size());

    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    data::Minibatches<S> batches(train, options.batch_size, options.seed);
    const Index steps_per_epoch = batches.batches_per_epoch();
    Progress<S> progress;
    progress.max_epochs = options.epochs;
    progress.epoch = options.initial_epoch;
    progress.max_iterations = options.epochs * steps_per_epoch;
    progress.iteration = options.initial_epoch * steps_per_epoch;
    progress.has_validation = options.validation != nullptr;
    progress.has_test = options.test != nullptr;
    const Eigen::Ref<const Vec<S>> w_view(w);
    const Progress<S>& seen = progress;
    FitResult result{{}, 0, 0, Status::max_iterations, 0};

    bool stop = false;
    detail::ProgressRecorder<S> record(progress);
    typename data::Minibatches<S>::Batch* batch = nullptr;
    Index batch_index = 0;
    auto batch_loss = [&](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> grad) -> S {
        const auto loss =
            static_cast<S>(model.loss_and_grad(at, batch->inputs, batch->labels, grad));
        if (record.evaluated(loss, grad, elapsed()))
            ((stop |=
              detail::invoke_hook<detail::on_evaluate_hook>(callbacks, opt, seen, at, grad)),
             ...);
        return loss;
    };
    // B′ for the function-space term: a second shuffle, golden-ratio seeded apart.
    std::optional<data::Minibatches<S>> probes;
    if constexpr (OutputComparer<Model, S>)
        probes.emplace(train, options.batch_size, options.seed + 0x9E3779B97F4A7C15ull);
    auto compare = [&] {
        if constexpr (OutputComparer<Model, S>)
            return [&](const Eigen::Ref<const Vec<S>>& u, const Eigen::Ref<const Vec<S>>& w,
                       Discrepancy rho, Eigen::Ref<Vec<S>> grad) {
                return model.output_discrepancy(u, w, probes->batch(batch_index).inputs, rho, grad);
            };
        else
            return detail::NoDiscrepancy{};
    }();
    detail::DriverObjective<S, decltype(batch_loss), decltype(compare)> objective(batch_loss,
                                                                                  compare);
    auto evaluate = [&](const data::LabelledSet<S>* set, double& loss, double& accuracy) {
        if (set == nullptr)
            return;
        const auto e = model.evaluate(w_view, set->inputs, set->labels);
        loss = e.loss;
        accuracy = e.accuracy;
    };

    ((stop |= detail::invoke_hook<detail::on_begin_hook>(callbacks, opt, seen, w_view)), ...);
    for (std::int64_t epoch = options.initial_epoch; epoch < options.epochs && !stop; ++epoch) {
        batches.start_epoch(epoch);
        if (probes)
            probes->start_epoch(epoch);
        const double epoch_start = elapsed();
        for (Index k = 0; k < steps_per_epoch && !stop; ++k) {
            auto current = batches.batch(k);
            batch = &current;
            batch_index = k;
            try {
                record.expect_evaluation();
                opt.step(w, objective);
            } catch (const NonFinite&) {
                result.status = Status::non_finite;
                stop = true;
                break;
            }
            record.stepped(elapsed());
            ((stop |= detail::invoke_hook<detail::on_step_hook>(callbacks, opt, seen, w_view)),
             ...);
        }
        if (result.status == Status::non_finite || progress.iteration % steps_per_epoch != 0)
            break;  // the epoch did not complete: no epoch end
        const double train_seconds = elapsed() - epoch_start;
        record.epoch_ended();
        progress.metrics = EpochMetrics{};
        evaluate(options.validation, progress.metrics.validation_loss,
                 progress.metrics.validation_accuracy);
        evaluate(options.test, progress.metrics.test_loss, progress.metrics.test_accuracy);
        progress.elapsed_seconds = elapsed();
        result.history.push_back({progress.epoch, progress.iteration,
                                  static_cast<double>(progress.epoch_loss), progress.metrics,
                                  train_seconds, progress.elapsed_seconds});
        ((stop |= detail::invoke_hook<detail::on_epoch_end_hook>(callbacks, opt, seen, w_view)),
         ...);
    }
    if (stop && result.status != Status::non_finite)
        result.status = Status::stopped_by_callback;
    progress.elapsed_seconds = elapsed();
    ((detail::invoke_hook<detail::on_end_hook>(callbacks, opt, seen, w_view)), ...);
    result.iterations = progress.iteration;
    result.skipped_steps = progress.skipped_steps;
    result.elapsed_seconds = progress.elapsed_seconds;
    return result;
}

}  // namespace scaltra
