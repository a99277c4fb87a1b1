// DCO meta-training over MPI: a TaskDistribution (train/task_distribution.hpp)
// that gives each rank a contiguous share of every meta-batch's tasks and gathers
// the shares' results on every rank (MPI_Allgatherv: the bytes, no arithmetic).
// meta_train then sums them in task order on every rank, so the meta-steps, and φ,
// are the one-process run's bit for bit and the same on every rank:
//
//     scaltra::dist::TaskShards shards(MPI_COMM_WORLD);
//     options.distribution = &shards;
//     scaltra::meta_train(opt, tasks, options);  // on every rank, same tasks
//
// Communication per meta-step: (|φ| + 2) scalars per task of the batch.
#pragma once

#include <mpi.h>

#include <climits>
#include <vector>

#include "../core/types.hpp"
#include "../train/task_distribution.hpp"
#include "data_parallel.hpp"

namespace scaltra::dist {

class TaskShards final : public TaskDistribution {
public:
    explicit TaskShards(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {}

    TaskRange share(Index tasks) const override {
        const detail::Share s = detail::share_of(tasks, comm_);
        return {s.first, s.count};
    }
    void exchange(Eigen::Ref<Mat<float>> results) const override { gather<float>(results); }
    void exchange(Eigen::Ref<Mat<double>> results) const override { gather<double>(results); }

private:
    template <Real S>
    void gather(Eigen::Ref<Mat<S>> results) const {
        const int ranks = detail::size_of(comm_);
        const Index rows = results.rows(), tasks = results.cols();
        if (results.outerStride() != rows)
            throw InvalidArgument("TaskShards: the results must be contiguous columns");
        if (rows * tasks > INT_MAX)
            throw DistributedError(scaltra::detail::concat(
                "TaskShards: ", rows * tasks, " scalars per meta-batch exceed MPI's int counts"));
        std::vector<int> counts(static_cast<std::size_t>(ranks)), offsets(counts.size());
        for (int r = 0; r < ranks; ++r) {
            const detail::Share s = detail::share_of(tasks, r, ranks);
            counts[static_cast<std::size_t>(r)] = static_cast<int>(s.count * rows);
            offsets[static_cast<std::size_t>(r)] = static_cast<int>(s.first * rows);
        }
        detail::check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, results.data(),
                                         counts.data(), offsets.data(), detail::mpi_type<S>(),
                                         comm_),
                          "MPI_Allgatherv");
        const TaskRange mine = share(tasks);
        const bool mine_failed =
            mine.count > 0 && results.row(rows - 1).segment(mine.first, mine.count).maxCoeff() != 0;
        if (mine_failed)
            return;  // meta_train rethrows this rank's own error
        for (Index j = 0; j < tasks; ++j)
            if (results(rows - 1, j) != S(0)) {
                const int rank = rank_of_task(j, tasks, ranks);
                const detail::Share s = detail::share_of(tasks, rank, ranks);
                throw DistributedError(scaltra::detail::concat(
                    "meta_train: rank ", rank, " failed on its tasks [", s.first, ", ",
                    s.first + s.count, ") of the meta-batch"));
            }
    }

    static int rank_of_task(Index j, Index tasks, int ranks) {
        int r = 0;
        while (r + 1 < ranks && j >= detail::share_of(tasks, r + 1, ranks).first)
            ++r;
        return r;
    }

    MPI_Comm comm_;
};

}  // namespace scaltra::dist
