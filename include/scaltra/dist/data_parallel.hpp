// Data parallelism over MPI (dist/, built only when MPI is found; scaltra.hpp
// does not include it). A global minibatch is split across the ranks of a
// communicator; each rank evaluates the mean loss and gradient of its shard, and
// AllreduceObjective combines them into those of the whole batch,
//   f(x) = (1/N) Σ_r n_r f_r(x),  ∇f(x) = (1/N) Σ_r n_r ∇f_r(x),  N = Σ_r n_r,
// so any optimizer of the library, handed this objective on every rank, trains
// data-parallel without changes, and the trajectory is the one-process run's up to
// the order of the sums.
#pragma once

#include <mpi.h>

#include <exception>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"

namespace scaltra::dist {

/// An MPI call that failed, or a rank whose part of a collective step failed.
class DistributedError : public Error {
public:
    using Error::Error;
};

namespace detail {

template <Real S>
MPI_Datatype mpi_type() {
    if constexpr (std::is_same_v<S, float>)
        return MPI_FLOAT;
    else
        return MPI_DOUBLE;
}

/// Throws DistributedError naming `call` unless it returned MPI_SUCCESS.
inline void check_mpi(int code, std::string_view call) {
    if (code == MPI_SUCCESS)
        return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    throw DistributedError(scaltra::detail::concat(call, " failed: ",
                                                   std::string_view(text, length)));
}

/// Sums `values` over the ranks of comm so that every rank receives the same bits:
/// rank 0 reduces, then broadcasts. (MPI_Allreduce does not promise identical
/// results on all ranks, and a learned optimizer's meta-state must not drift.)
template <Real S>
void sum_identically(Eigen::Ref<Vec<S>> values, MPI_Comm comm) {
    int rank = 0;
    check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    const int n = static_cast<int>(values.size());
    void* send = rank == 0 ? MPI_IN_PLACE : values.data();
    check_mpi(MPI_Reduce(send, values.data(), n, mpi_type<S>(), MPI_SUM, 0, comm), "MPI_Reduce");
    check_mpi(MPI_Bcast(values.data(), n, mpi_type<S>(), 0, comm), "MPI_Bcast");
}

}  // namespace detail

/// The objective of a minibatch split across the ranks of `comm`. `local` is this
/// rank's shard objective (the mean over its `local_count` examples; a count of 0
/// is a rank without examples this step, whose `local` is not called). Every
/// rank calls it at once with the same x; each gets the same loss and gradient.
/// One collective sum per call, of x's size plus three numbers, into a buffer
/// allocated at the first call. If `local` throws on some rank, every rank
/// throws: that rank its own exception, the others DistributedError.
template <Real S, class F>
requires Objective<F, S>
class AllreduceObjective {
public:
    AllreduceObjective(F local, Index local_count, MPI_Comm comm = MPI_COMM_WORLD)
        : local_(std::move(local)), comm_(comm) {
        set_local_count(local_count);
    }

    /// The number of examples in this rank's shard for the next calls.
    void set_local_count(Index count) {
        scaltra::detail::require_at_least("local_count", count, Index(0));
        local_count_ = count;
    }
    Index local_count() const { return local_count_; }

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) {
        scaltra::detail::require_size("gradient", grad.size(), x.size());
        const Index n = x.size();
        // buffer_ = [n_r ∇f_r, n_r f_r, n_r, failed]
        buffer_.resize(n + 3);
        buffer_.setZero();
        std::exception_ptr failure;
        if (local_count_ > 0) {
            try {
                const S loss = static_cast<S>(local_(x, buffer_.head(n)));
                const S weight = static_cast<S>(local_count_);
                buffer_.head(n) *= weight;
                buffer_[n] = weight * loss;
                buffer_[n + 1] = weight;
            } catch (...) {
                failure = std::current_exception();
                buffer_.setZero();
                buffer_[n + 2] = S(1);
            }
        }
        detail::sum_identically<S>(buffer_, comm_);
        if (failure)
            std::rethrow_exception(failure);
        if (buffer_[n + 2] != S(0))
            throw DistributedError(scaltra::detail::concat(
                "the objective failed on ", buffer_[n + 2], " other rank(s)"));
        const S total = buffer_[n + 1];
        if (total == S(0))
            throw InvalidArgument("Invalid local_count: no rank has an example");
        grad = buffer_.head(n) / total;
        return buffer_[n] / total;
    }

private:
    F local_;
    MPI_Comm comm_;
    Index local_count_ = 0;
    Vec<S> buffer_;
};

}  // namespace scaltra::dist
