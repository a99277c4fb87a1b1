// Data parallelism over MPI (dist/, built only when MPI is found; scaltra.hpp
// does not include it). A global minibatch is split across the ranks of a
// communicator; each rank evaluates the mean loss and gradient of its shard, and
// AllreduceObjective combines them into those of the whole batch,
//   f(x) = (1/N) Σ_r n_r f_r(x),  ∇f(x) = (1/N) Σ_r n_r ∇f_r(x),  N = Σ_r n_r,
// so any optimizer of the library, handed this objective on every rank, trains
// data-parallel without changes, and the trajectory is the one-process run's up to
// the order of the sums. DataParallelClassifier does the same for fit: every rank
// runs fit with the same seed, so each holds the same global minibatch, and the
// model wrapper evaluates this rank's columns of it.
#pragma once

#include <mpi.h>

#include <climits>
#include <exception>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

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

inline int rank_of(MPI_Comm comm) {
    int rank = 0;
    check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
    return rank;
}

inline int size_of(MPI_Comm comm) {
    int ranks = 0;
    check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
    return ranks;
}

/// This rank's share [first, first + count) of `total` items split into contiguous
/// blocks over the ranks of comm, the first ranks taking the smaller ones.
struct Share {
    Index first, count;
};
inline Share share_of(Index total, Index rank, Index ranks) {
    const Index first = total * rank / ranks;
    return {first, total * (rank + 1) / ranks - first};
}
inline Share share_of(Index total, MPI_Comm comm) {
    return share_of(total, rank_of(comm), size_of(comm));
}

/// Sums vectors over the ranks of a communicator so that every rank receives the
/// same bits (MPI_Allreduce does not promise that, and a learned optimizer's
/// meta-state must not drift): a reduce-scatter, after which each rank holds the
/// sum of its contiguous share of the entries, and an allgather, which copies the
/// shares to every rank. Each entry is summed by one rank only, and each rank
/// sends about 2(P − 1)/P of the vector, as in a ring allreduce. The buffers are
/// kept for the next call of the same size.
template <Real S>
class IdenticalSum {
public:
    void operator()(Eigen::Ref<Vec<S>> values, MPI_Comm comm) {
        const int ranks = size_of(comm), rank = rank_of(comm);
        const Index n = values.size();
        if (n > INT_MAX)
            throw DistributedError(scaltra::detail::concat(
                "cannot sum ", n, " entries over MPI: its counts are ints"));
        if (n != size_ || ranks != static_cast<int>(counts_.size())) {
            counts_.resize(static_cast<std::size_t>(ranks));
            offsets_.resize(counts_.size());
            for (int r = 0; r < ranks; ++r) {
                const Share s = share_of(n, r, ranks);
                counts_[static_cast<std::size_t>(r)] = static_cast<int>(s.count);
                offsets_[static_cast<std::size_t>(r)] = static_cast<int>(s.first);
            }
            share_.resize(counts_[static_cast<std::size_t>(rank)]);
            size_ = n;
        }
        check_mpi(MPI_Reduce_scatter(values.data(), share_.data(), counts_.data(),
                                     mpi_type<S>(), MPI_SUM, comm),
                  "MPI_Reduce_scatter");
        check_mpi(MPI_Allgatherv(share_.data(), static_cast<int>(share_.size()), mpi_type<S>(),
                                 values.data(), counts_.data(), offsets_.data(), mpi_type<S>(),
                                 comm),
                  "MPI_Allgatherv");
    }

private:
    Index size_ = -1;
    std::vector<int> counts_, offsets_;
    Vec<S> share_;
};

}  // namespace detail

/// The objective of a minibatch split across the ranks of `comm`. `local` is this
/// rank's shard objective (the mean over its `local_count` examples; a count of 0
/// is a rank without examples this step, whose `local` is not called). Every
/// rank calls it at once with the same x; each gets the same loss and gradient.
/// One identical sum (IdenticalSum: a reduce-scatter and an allgather) per call,
/// of x's size plus three numbers, in buffers allocated at the first call. If
/// `local` throws on some rank, every rank throws: that rank its own exception,
/// the others DistributedError.
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
    /// This rank's shard objective.
    F& local() { return local_; }

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) {
        scaltra::detail::require_size("gradient", grad.size(), x.size());
        const Index n = x.size();
        // buffer_ = [n_r ∇f_r, n_r f_r, n_r, failed]
        buffer_.resize(n + 3);
        buffer_.tail(3).setZero();
        std::exception_ptr failure;
        if (local_count_ == 0) {
            buffer_.head(n).setZero();  // a rank without examples adds nothing
        } else {
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
        sum_(buffer_, comm_);
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
    detail::IdenticalSum<S> sum_;
};

/// A Classifier (train/fit.hpp) for data-parallel fit: `fit(dp, opt, w, train, …)`
/// on every rank of comm with the same options gives every rank the same global
/// minibatch; dp's loss_and_grad evaluates this rank's contiguous share of its
/// columns with `model` and combines the shares with an AllreduceObjective, so
/// every rank steps with the whole batch's loss and gradient (and the optimizer's
/// state stays the same on every rank). evaluate splits a set the same way and
/// sums the shares' losses and correct counts; output_discrepancy (APO's
/// function-space term, when the model has it) is shared out like the loss.
/// `model` is used by reference and must outlive dp; its layout() is dp's.
template <Real S, class Model>
class DataParallelClassifier {
    /// This rank's share of the columns of the current batch, whatever batch that is.
    struct ShareView {
        const S* data = nullptr;
        Index rows = 0, cols = 0, stride = 0;
        void set(const Eigen::Ref<const Mat<S>>& inputs, detail::Share share) {
            data = inputs.data() + share.first * inputs.outerStride();
            rows = inputs.rows();
            cols = share.count;
            stride = inputs.outerStride();
        }
        Eigen::Map<const Mat<S>, 0, Eigen::OuterStride<>> columns() const {
            return {data, rows, cols, Eigen::OuterStride<>(stride)};
        }
    };
    /// The mean loss of the share.
    struct ShareLoss {
        Model* model;
        ShareView share;
        std::span<const Index> labels;
        S operator()(const Eigen::Ref<const Vec<S>>& w, Eigen::Ref<Vec<S>> grad) {
            grad.setZero();  // the model adds its gradient
            return static_cast<S>(model->loss_and_grad(w, share.columns(), labels, grad));
        }
    };
    /// The mean discrepancy ρ(f(x̃; u), f(x̃; w)) of the share (APO's function-space term).
    struct ShareDiscrepancy {
        Model* model;
        ShareView share;
        const Eigen::Ref<const Vec<S>>* w;
        Discrepancy rho;
        S operator()(const Eigen::Ref<const Vec<S>>& u, Eigen::Ref<Vec<S>> grad) {
            grad.setZero();
            return static_cast<S>(model->output_discrepancy(u, *w, share.columns(), rho, grad));
        }
    };

public:
    explicit DataParallelClassifier(Model& model, MPI_Comm comm = MPI_COMM_WORLD)
        : model_(&model),
          comm_(comm),
          loss_(ShareLoss{&model, {}, {}}, 0, comm),
          discrepancy_(ShareDiscrepancy{&model, {}, nullptr, Discrepancy::squared_error}, 0,
                       comm) {}

    Index input_size() const { return static_cast<Index>(model_->input_size()); }
    Index output_size() const { return static_cast<Index>(model_->output_size()); }
    decltype(auto) layout() const
    requires requires(const Model& m) { m.layout(); }
    { return model_->layout(); }

    /// The mean loss of the whole batch (every rank passes the same one); its
    /// gradient is added to grad. Collective: every rank calls it at once.
    S loss_and_grad(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                    std::span<const Index> labels, Eigen::Ref<Vec<S>> grad) {
        scaltra::detail::require_size("labels", static_cast<Index>(labels.size()),
                                      inputs.cols());
        const detail::Share share = detail::share_of(inputs.cols(), comm_);
        ShareLoss& f = loss_.local();
        f.share.set(inputs, share);
        f.labels = labels.subspan(static_cast<std::size_t>(share.first),
                                  static_cast<std::size_t>(share.count));
        return add_whole(loss_, share.count, w, grad);
    }

    /// The mean of ρ(f(x̃; u), f(x̃; w)) over inputs x̃ (APO's function-space term;
    /// every rank passes the same ones), each rank taking its share; its gradient
    /// with respect to u is added to grad. When the model has output_discrepancy.
    S output_discrepancy(const Eigen::Ref<const Vec<S>>& u, const Eigen::Ref<const Vec<S>>& w,
                         const Eigen::Ref<const Mat<S>>& inputs, Discrepancy rho,
                         Eigen::Ref<Vec<S>> grad)
    requires requires(Model& m, Eigen::Ref<Vec<S>>& g) {
        m.output_discrepancy(u, w, inputs, rho, g);
    }
    {
        const detail::Share share = detail::share_of(inputs.cols(), comm_);
        ShareDiscrepancy& f = discrepancy_.local();
        f.share.set(inputs, share);
        f.w = &w;
        f.rho = rho;
        return add_whole(discrepancy_, share.count, u, grad);
    }

    /// Mean loss and accuracy over a set, each rank evaluating its share.
    /// Collective: every rank calls it at once with the same set.
    auto evaluate(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                  std::span<const Index> labels) {
        using Result = std::remove_cvref_t<decltype(model_->evaluate(w, inputs, labels))>;
        scaltra::detail::require_size("labels", static_cast<Index>(labels.size()),
                                      inputs.cols());
        if (inputs.cols() == 0)
            throw InvalidArgument("DataParallelClassifier: evaluate needs at least one example");
        const detail::Share share = detail::share_of(inputs.cols(), comm_);
        // [count · loss, count · accuracy, failed]
        Vec<double> sums = Vec<double>::Zero(3);
        std::exception_ptr failure;
        if (share.count > 0) {
            try {
                const auto e = model_->evaluate(
                    w, inputs.middleCols(share.first, share.count),
                    labels.subspan(static_cast<std::size_t>(share.first),
                                   static_cast<std::size_t>(share.count)));
                const auto count = static_cast<double>(share.count);
                sums << count * e.loss, count * e.accuracy, 0.0;
            } catch (...) {
                failure = std::current_exception();
                sums << 0.0, 0.0, 1.0;
            }
        }
        detail::IdenticalSum<double>()(sums, comm_);
        if (failure)
            std::rethrow_exception(failure);
        if (sums[2] != 0)
            throw DistributedError(scaltra::detail::concat("the evaluation failed on ", sums[2],
                                                           " other rank(s)"));
        const auto total = static_cast<double>(inputs.cols());
        return Result{sums[0] / total, sums[1] / total};
    }

private:
    /// The whole batch's value of `objective` (its share set, of `count` examples)
    /// at x; the whole batch's gradient is added to grad.
    template <class F>
    S add_whole(AllreduceObjective<S, F>& objective, Index count,
                const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) {
        objective.set_local_count(count);
        whole_gradient_.resize(x.size());
        const S value = objective(x, whole_gradient_);
        grad += whole_gradient_;
        return value;
    }

    Model* model_;
    MPI_Comm comm_;
    AllreduceObjective<S, ShareLoss> loss_;
    AllreduceObjective<S, ShareDiscrepancy> discrepancy_;
    Vec<S> whole_gradient_;
};

}  // namespace scaltra::dist
