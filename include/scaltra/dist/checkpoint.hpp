// Checkpoints of a data-parallel run (train/checkpoint.hpp's, under MPI). Every
// rank holds the same parameters and optimizer state, so one copy is written:
// save_checkpoint first checks that the ranks agree (state_agreement.hpp, the
// parameters included), then rank 0 writes the file atomically and durably, and
// every rank learns whether it did. load_checkpoint has rank 0 read the file and
// broadcast its bytes, so the other ranks need not see rank 0's file system; each
// rank then loads the same bytes. A run resumed from it (the same epoch, seed and
// number of ranks) continues bit-identically.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../train/checkpoint.hpp"
#include "../train/progress.hpp"
#include "data_parallel.hpp"
#include "state_agreement.hpp"

namespace scaltra::dist {

namespace detail {

/// Broadcasts `text` from rank 0 (its size first).
inline void broadcast_string(std::string& text, MPI_Comm comm) {
    auto size = static_cast<std::int64_t>(text.size());
    check_mpi(MPI_Bcast(&size, 1, MPI_INT64_T, 0, comm), "MPI_Bcast");
    text.resize(static_cast<std::size_t>(size));
    // In pieces of at most 2³⁰ bytes: MPI counts are ints.
    for (std::int64_t done = 0; done < size;) {
        const std::int64_t piece = std::min<std::int64_t>(size - done, std::int64_t{1} << 30);
        check_mpi(MPI_Bcast(text.data() + done, static_cast<int>(piece), MPI_CHAR, 0, comm),
                  "MPI_Bcast");
        done += piece;
    }
}

/// How rank 0 fared with the file: the status and message every rank throws with.
enum class FileOutcome : int { ok = 0, missing = 1, failed = 2 };

/// Broadcasts rank 0's outcome and message; on the other ranks, throws what rank 0
/// reported: `missing` as MissingData, `failed` as DistributedError.
inline void share_outcome(FileOutcome& outcome, std::string& message, MPI_Comm comm) {
    int code = static_cast<int>(outcome);
    check_mpi(MPI_Bcast(&code, 1, MPI_INT, 0, comm), "MPI_Bcast");
    if (code == static_cast<int>(FileOutcome::ok))
        return;
    broadcast_string(message, comm);
    if (rank_of(comm) == 0)
        return;
    if (code == static_cast<int>(FileOutcome::missing))
        throw MissingData(message);
    throw DistributedError(scaltra::detail::concat("rank 0: ", message));
}

}  // namespace detail

/// save_checkpoint (train/checkpoint.hpp) of a data-parallel run; every rank of
/// comm calls it at once. Throws StateDivergence on every rank, before anything is
/// written, unless all ranks hold the same parameters and optimizer state; then
/// rank 0 writes. If that fails, rank 0 throws its error and the others
/// DistributedError with its message; `path` keeps the previous checkpoint.
template <Optimizer Opt>
void save_checkpoint(const std::filesystem::path& path, const Opt& opt,
                     const Eigen::Ref<const Vec<typename Opt::Scalar>>& w, CheckpointInfo info,
                     MPI_Comm comm = MPI_COMM_WORLD) {
    std::vector<BlockDigest> digests = state_digests(opt);
    digests.push_back({"parameters", detail::hash_dense(w, 0, w.size())});
    detail::require_same_digests(digests, comm);
    auto outcome = detail::FileOutcome::ok;
    std::string message;
    std::exception_ptr failure;
    if (detail::rank_of(comm) == 0) {
        try {
            scaltra::save_checkpoint(path, opt, w, info);
        } catch (const std::exception& e) {
            failure = std::current_exception();
            outcome = detail::FileOutcome::failed;
            message = e.what();
        }
    }
    detail::share_outcome(outcome, message, comm);
    if (failure)
        std::rethrow_exception(failure);
}

/// load_checkpoint (train/checkpoint.hpp) of a data-parallel run; every rank of
/// comm calls it at once. Rank 0 reads `path` and broadcasts its bytes, and every
/// rank loads them, all or nothing: a file rank 0 cannot open raises MissingData
/// on every rank, a corrupt one CorruptState on every rank, and then neither `w`
/// nor `opt` changes anywhere.
template <Optimizer Opt>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Opt& opt,
                               Eigen::Ref<Vec<typename Opt::Scalar>> w,
                               MPI_Comm comm = MPI_COMM_WORLD) {
    auto outcome = detail::FileOutcome::ok;
    std::string bytes, message;
    if (detail::rank_of(comm) == 0) {
        std::error_code ec;
        std::ifstream in;
        if (!std::filesystem::is_directory(path, ec))  // which an ifstream opens
            in.open(path, std::ios::binary);
        if (in) {
            bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            if (in.bad()) {
                outcome = detail::FileOutcome::missing;
                message = scaltra::detail::concat("Checkpoint: cannot read '", path.string(), "'");
            }
        } else {
            outcome = detail::FileOutcome::missing;
            message = scaltra::detail::concat("Checkpoint: cannot open '", path.string(), "'");
        }
    }
    detail::share_outcome(outcome, message, comm);
    if (outcome != detail::FileOutcome::ok)
        throw MissingData(message);  // rank 0; the others threw in share_outcome
    detail::broadcast_string(bytes, comm);
    std::istringstream in(std::move(bytes));
    return scaltra::detail::load_checkpoint_from(in, path.string(), opt, w);
}

/// The Checkpoint callback (train/checkpoint.hpp) of a data-parallel run: at the
/// end of every `every`-th epoch and of the last one, every rank calls
/// dist::save_checkpoint.
class Checkpoint {
public:
    explicit Checkpoint(std::filesystem::path path, std::int64_t every = 1,
                        MPI_Comm comm = MPI_COMM_WORLD)
        : schedule_(std::move(path), every), comm_(comm) {}

    template <Optimizer Opt, class S>
    void on_epoch_end(const Opt& opt, const Progress<S>& p, const Eigen::Ref<const Vec<S>>& w) {
        if (schedule_.due(p))
            dist::save_checkpoint(schedule_.path(), opt, w, {p.epoch, p.iteration}, comm_);
    }

    const std::filesystem::path& path() const { return schedule_.path(); }

private:
    scaltra::Checkpoint schedule_;  // where and when; it saves nothing itself
    MPI_Comm comm_;
};

}  // namespace scaltra::dist
