// meta_train(opt, tasks, options, callbacks...): DCO's Algorithm 1 (research-
// apo-dco.md §4.3). For each of `epochs` meta-epochs the tasks are taken in
// batches (all of them by default, the paper's full batch; task_batch for
// minibatches, reshuffled every epoch from `seed`). For each task of a batch the
// optimizer runs `inner_steps` steps from the task's fixed initial point; the
// mean of the validation losses at the end is the meta-loss, its exact gradient
// with respect to φ (reverse through the unrolled steps, dco.hpp) goes to one
// meta-optimizer step. Afterwards φ is frozen and opt.step(x, f) uses it.
//
// Tasks are independent: a batch's tasks run on OpenMP threads (`threads`, 0 for
// omp_get_max_threads()), each into its own workspace, and their losses and
// gradients are summed in task order, so the result is bit-identical for any
// thread count. A task is used by one thread at a time. With a `distribution`
// (task_distribution.hpp; dist::TaskShards over MPI) each process computes its
// share of every batch and the exchange brings in the others' results before the
// sum in task order: the same meta-steps, bit for bit, on any number of processes.
//
// Callbacks are minimize's (hooks.hpp), with the meta-step as the iteration:
// on_begin, on_step after every meta-step (progress.loss the batch's meta-loss
// before the step, gradient_norm ‖∂/∂φ‖, x the new φ), on_epoch_end after every
// meta-epoch (epoch_loss its mean meta-loss), on_end; ProgressBar and CsvLogger
// work unchanged. on_evaluate is refused at compile time (there is no single
// objective call to show it). The result is a MinimizeResult: loss and
// gradient_norm are the meta-loss and its gradient over all tasks at the final
// φ, objective_calls the task unrolls. A non-finite meta-loss or meta-gradient
// follows the optimizer's NonFinitePolicy: under raise the run ends with
// Status::non_finite and φ as before that meta-step; under skip the meta-step is
// skipped and counted in skipped_steps.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/validate.hpp"
#include "hooks.hpp"
#include "progress.hpp"
#include "task_distribution.hpp"

namespace scaltra {

struct MetaTrainOptions {
    std::int64_t epochs = 20;       ///< M, meta-epochs (the paper's 20)
    std::int64_t inner_steps = 1;   ///< T, steps per task before the validation loss
    std::int64_t task_batch = 0;    ///< tasks per meta-step; 0: all (one meta-step per epoch)
    std::uint64_t seed = 0;         ///< the task order, reshuffled every epoch, when batched
    int threads = 0;                ///< OpenMP threads over tasks; 0: omp_get_max_threads()
    /// The processes tasks are shared across (every one calls meta_train at once
    /// with the same tasks and options); null: all of them here.
    const TaskDistribution* distribution = nullptr;

    void validate() const {
        detail::require_positive("epochs", epochs);
        detail::require_positive("inner_steps", inner_steps);
        detail::require_nonnegative("task_batch", task_batch);
        detail::require_nonnegative("threads", threads);
    }
};

/// An optimizer meta_train can train on tasks of type Task (the DCO optimizers).
template <class O, class Task>
concept MetaTrainable = requires(O& opt, const O& copt, Task& task, typename O::Workspace& ws,
                                 const Eigen::Ref<const Vec<typename O::Scalar>>& h,
                                 Eigen::Ref<Vec<typename O::Scalar>>& out) {
    { copt.workspace(Index{1}) } -> std::same_as<typename O::Workspace>;
    { copt.meta_gradient(task, ws) } -> std::same_as<typename O::Scalar>;
    copt.add_meta_gradient(ws, typename O::Scalar(1), out);
    { opt.meta_update(h) } -> std::same_as<bool>;
    { copt.state().phi } -> std::convertible_to<const Vec<typename O::Scalar>&>;
};

namespace detail {
/// Runs f(j) for j in [0, count) on `threads` OpenMP threads (one without
/// OpenMP), then rethrows the first exception of the lowest j, if any.
template <class F>
void for_each_task(std::size_t count, int threads, F&& f) {
    std::vector<std::exception_ptr> errors(count);
    const auto n = static_cast<std::int64_t>(count);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) num_threads(threads)
#else
    (void)threads;
#endif
    for (std::int64_t j = 0; j < n; ++j) {
        try {
            f(static_cast<std::size_t>(j));
        } catch (...) {
            errors[static_cast<std::size_t>(j)] = std::current_exception();
        }
    }
    for (const auto& e : errors)
        if (e)
            std::rethrow_exception(e);
}
}  // namespace detail

template <class Opt, class Tasks, class... Callbacks>
requires TaskSet<Tasks, typename Opt::Scalar>
         && MetaTrainable<Opt, std::remove_cvref_t<decltype(std::declval<Tasks&>()[0])>>
MinimizeResult<typename Opt::Scalar> meta_train(Opt& opt, Tasks& tasks,
                                                const MetaTrainOptions& options,
                                                Callbacks&&... callbacks) {
    using S = typename Opt::Scalar;
    using X = Eigen::Ref<const Vec<S>>;
    static_assert((detail::valid_callback<std::remove_reference_t<Callbacks>, Opt, S> && ...),
                  "a callback passed to meta_train has no hook, or a hook the driver cannot call "
                  "(see train/hooks.hpp)");
    static_assert((!detail::hook_present<detail::on_evaluate_hook, std::remove_reference_t<Callbacks>,
                                         Opt&, const Progress<S>&, const X&, Eigen::Ref<Vec<S>>&>
                   && ...),
                  "meta_train has no single objective call to show on_evaluate; a callback "
                  "with on_evaluate (gradient clipping) does not apply to meta-training");
    options.validate();
    const std::size_t N = tasks.size();
    if (N == 0)
        throw InvalidArgument("meta_train: the task set is empty");
    const Index p = opt.layout().size();
    for (std::size_t i = 0; i < N; ++i) {
        const X start(tasks[i].initial_point());
        if (start.size() != p)
            throw DimensionMismatch(detail::concat("meta_train: task ", i, " has ", start.size(),
                                                   " parameters, the optimizer ", p));
    }
    // More than one inner step on tasks without Hessian-vector products: the
    // optimizer's meta_gradient refuses it, before any meta-step.
#ifdef _OPENMP
    const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();
#else
    const int threads = 1;
#endif

    const std::size_t batch =
        options.task_batch == 0 ? N : std::min(N, static_cast<std::size_t>(options.task_batch));
    const std::size_t batches = (N + batch - 1) / batch;
    const AllTasksHere all_here;
    const TaskDistribution& distribution =
        options.distribution != nullptr ? *options.distribution : all_here;
    std::vector<typename Opt::Workspace> ws;  // one per task of this process's share
    // Per task of a batch: its weighted ∂/∂φ, its loss, and whether it failed.
    const Index q = opt.state().phi.size();
    Mat<S> results(q + 2, static_cast<Index>(batch));
    std::vector<std::size_t> order(N);
    for (std::size_t i = 0; i < N; ++i)
        order[i] = i;
    Rng rng(options.seed);
    Vec<S> h = Vec<S>::Zero(q);

    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    Progress<S> progress;
    progress.max_iterations = options.epochs * static_cast<std::int64_t>(batches);
    progress.max_epochs = options.epochs;
    const Progress<S>& seen = progress;
    [[maybe_unused]] auto phi = [&] { return X(opt.state().phi); };

    // The meta-loss and meta-gradient h over order[first, first + count).
    auto batch_gradient = [&](std::size_t first, std::size_t count) {
        const TaskRange mine = distribution.share(static_cast<Index>(count));
        while (ws.size() < static_cast<std::size_t>(mine.count))
            ws.push_back(opt.workspace(options.inner_steps));
        const S weight = S(1) / static_cast<S>(count);
        auto batch_results = results.leftCols(static_cast<Index>(count));
        batch_results.setZero();
        std::exception_ptr failure;
        try {
            detail::for_each_task(static_cast<std::size_t>(mine.count), threads,
                                  [&](std::size_t j) {
                                      const Index task = mine.first + static_cast<Index>(j);
                                      auto column = batch_results.col(task);
                                      column[q] = opt.meta_gradient(
                                          tasks[order[first + static_cast<std::size_t>(task)]],
                                          ws[j]);
                                      opt.add_meta_gradient(ws[j], weight, column.head(q));
                                  });
        } catch (...) {
            failure = std::current_exception();
            batch_results.row(q + 1).segment(mine.first, mine.count).setOnes();
        }
        distribution.exchange(batch_results);  // throws here if another share failed
        if (failure)
            std::rethrow_exception(failure);
        progress.objective_calls += static_cast<std::int64_t>(count);
        h.setZero();
        S loss = S(0);
        for (Index j = 0; j < static_cast<Index>(count); ++j) {  // in task order: same sums
            loss += weight * batch_results(q, j);
            h += batch_results.col(j).head(q);
        }
        if (!std::isfinite(loss))
            h.setConstant(std::numeric_limits<S>::quiet_NaN());  // no gradient: the policy applies
        return loss;
    };

    bool stop = false;
    ((stop |= detail::invoke_hook<detail::on_begin_hook>(callbacks, opt, seen, phi())), ...);
    Status status = stop ? Status::stopped_by_callback : Status::max_iterations;
    for (std::int64_t epoch = 0; !stop && epoch < options.epochs; ++epoch) {
        if (batch < N)
            rng.shuffle(std::span<std::size_t>(order));
        double sum = 0;
        std::int64_t finite = 0;
        for (std::size_t b = 0; !stop && b < batches; ++b) {
            const std::size_t first = b * batch, count = std::min(batch, N - first);
            const S loss = batch_gradient(first, count);
            progress.loss = loss;
            progress.gradient_norm = h.norm();
            try {
                if (!opt.meta_update(h))
                    ++progress.skipped_steps;
            } catch (const NonFinite&) {
                status = Status::non_finite;
                stop = true;
                break;
            }
            if (std::isfinite(loss)) {
                sum += static_cast<double>(loss);
                ++finite;
            }
            ++progress.iteration;
            progress.elapsed_seconds = elapsed();
            ((stop |= detail::invoke_hook<detail::on_step_hook>(callbacks, opt, seen, phi())), ...);
        }
        if (status == Status::non_finite)
            break;
        ++progress.epoch;
        progress.epoch_loss = finite > 0 ? static_cast<S>(sum / static_cast<double>(finite))
                                         : std::numeric_limits<S>::quiet_NaN();
        ((stop |= detail::invoke_hook<detail::on_epoch_end_hook>(callbacks, opt, seen, phi())), ...);
        if (stop && status != Status::non_finite)
            status = Status::stopped_by_callback;
    }

    // The meta-loss and its gradient over all tasks at the final φ (in index order).
    for (std::size_t i = 0; i < N; ++i)
        order[i] = i;
    S total = S(0);
    Vec<S> g_total = Vec<S>::Zero(h.size());
    for (std::size_t first = 0; first < N; first += batch) {
        const std::size_t count = std::min(batch, N - first);
        const S weight = static_cast<S>(count) / static_cast<S>(N);
        total += weight * batch_gradient(first, count);
        g_total += weight * h;
    }
    progress.loss = total;
    progress.gradient_norm = g_total.norm();
    progress.elapsed_seconds = elapsed();
    ((detail::invoke_hook<detail::on_end_hook>(callbacks, opt, seen, phi())), ...);
    return MinimizeResult<S>::of(progress, status, progress.elapsed_seconds);
}

}  // namespace scaltra
