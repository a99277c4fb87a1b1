// Which tasks of a meta-batch this process computes, and how the others' results
// reach it: meta_train's hook for running over several processes (dist/task_shards.hpp
// does it over MPI). A meta-batch's results are a matrix with one column per task
// of the batch, in task order; each process fills in the columns of its share, the
// distribution's exchange fills in the rest, and every process then sums all the
// columns in task order, so the meta-step is the same, bit for bit, for any number
// of processes (and of threads).
#pragma once

#include "../core/types.hpp"

namespace scaltra {

/// Tasks [first, first + count) of a meta-batch.
struct TaskRange {
    Index first = 0;
    Index count = 0;
};

class TaskDistribution {
public:
    virtual ~TaskDistribution() = default;

    /// The tasks of a batch of `tasks` this process computes.
    virtual TaskRange share(Index tasks) const = 0;

    /// `results` (a column per task of the batch) holds this process's share; on
    /// return every column holds the result of the process that computed it. The
    /// last row is 1 in the columns of a share that failed (0 otherwise): every
    /// process takes part in the exchange even then, and afterwards a process
    /// whose own share did not fail throws when another's did.
    virtual void exchange(Eigen::Ref<Mat<float>> results) const = 0;
    virtual void exchange(Eigen::Ref<Mat<double>> results) const = 0;
};

/// One process computes every task: nothing to exchange.
class AllTasksHere final : public TaskDistribution {
public:
    TaskRange share(Index tasks) const override { return {0, tasks}; }
    void exchange(Eigen::Ref<Mat<float>>) const override {}
    void exchange(Eigen::Ref<Mat<double>>) const override {}
};

}  // namespace scaltra
