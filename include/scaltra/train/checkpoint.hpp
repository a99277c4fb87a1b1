// Checkpoints: the parameters, the optimizer's state and how far training got,
// in one file that is replaced atomically and durably: the bytes go to
// `<path>.tmp` in the same directory, which is fsync'ed, renamed over `<path>`,
// and then the directory is fsync'ed (so the rename itself is on disk). A
// process killed at any moment, or a machine that loses power, leaves either the
// previous checkpoint or the new one, never a torn file (tests/checkpoint_kill_test.cpp
// kills a writer hundreds of times). POSIX only (open, fsync, rename).
//
// File: a state record named "checkpoint" in the format of core/state_io.hpp
// (fields epoch, iteration, parameters), followed by the optimizer's own saved
// state. Loading checks both before it changes anything.
#pragma once

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "../core/concepts.hpp"
#include "../core/state_io.hpp"
#include "../core/validate.hpp"
#include "progress.hpp"

namespace scaltra {

/// Where a checkpoint was taken.
struct CheckpointInfo {
    std::int64_t epoch;      ///< epochs completed: pass as FitOptions::initial_epoch to resume
    std::int64_t iteration;  ///< optimizer steps completed
};

namespace detail {
template <Real S>
struct CheckpointRecord {
    std::int64_t epoch = 0;
    std::int64_t iteration = 0;
    Vec<S> parameters;

    static constexpr std::array field_names{"epoch", "iteration", "parameters"};
    auto fields() { return std::tie(epoch, iteration, parameters); }
    auto fields() const { return std::tie(epoch, iteration, parameters); }
    void validate() const {
        require_state(epoch >= 0, "epoch", "is negative");
        require_state(iteration >= 0, "iteration", "is negative");
    }
};

/// A POSIX file descriptor, closed when it goes out of scope.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    ~FileDescriptor() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    int get() const { return fd_; }
    /// Closes it now; false (errno set) when close reports an error, as it may for a write.
    bool close() {
        const int fd = std::exchange(fd_, -1);
        return ::close(fd) == 0;
    }

private:
    int fd_;
};

inline Error checkpoint_error(std::string_view what, const std::filesystem::path& file) {
    return Error(concat("Checkpoint: cannot ", what, " '", file.string(), "': ",
                        std::strerror(errno)));
}

/// Writes `bytes` to `file` (created or truncated) and fsyncs it.
inline void write_and_sync(const std::filesystem::path& file, std::string_view bytes) {
    FileDescriptor fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0)
        throw checkpoint_error("open", file);
    for (std::size_t done = 0; done < bytes.size();) {
        const ::ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            throw checkpoint_error("write", file);
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0)
        throw checkpoint_error("fsync", file);
    if (!fd.close())
        throw checkpoint_error("close", file);
}

/// Makes a rename in `directory` durable.
inline void sync_directory(const std::filesystem::path& directory) {
    FileDescriptor fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0 || ::fsync(fd.get()) != 0)
        throw checkpoint_error("fsync the directory", directory);
}
}  // namespace detail

/// Writes parameters `w`, the state of `opt` and `info` to `path`, atomically
/// and durably (see the top of this file). Throws Error naming the system call
/// that failed; up to the rename, `path` still holds the previous checkpoint.
/// What load_checkpoint would refuse is not written (the previous checkpoint is
/// kept): a w not of the optimizer's size (DimensionMismatch) or not finite
/// (NonFinite), a state that is not finite or valid (CorruptState).
template <Optimizer Opt>
void save_checkpoint(const std::filesystem::path& path, const Opt& opt,
                     const Eigen::Ref<const Vec<typename Opt::Scalar>>& w, CheckpointInfo info) {
    using S = typename Opt::Scalar;
    detail::require_nonnegative("checkpoint epoch", info.epoch);
    detail::require_nonnegative("checkpoint iteration", info.iteration);
    if constexpr (requires { opt.layout().size(); })
        detail::require_size("checkpoint parameters", w.size(), opt.layout().size());
    if (!detail::all_finite(w))
        throw NonFinite(detail::concat("Checkpoint: the parameters are not finite; '",
                                       path.string(), "' is unchanged"));
    try {
        check_state<S>(opt.state(), opt.state());
    } catch (const CorruptState& e) {
        throw CorruptState(detail::concat("Checkpoint: the optimizer's state would not load (",
                                          e.what(), "); '", path.string(), "' is unchanged"));
    }
    std::ostringstream bytes;
    save_state<S>(bytes, "checkpoint", detail::CheckpointRecord<S>{info.epoch, info.iteration, w});
    opt.save(bytes);
    const std::filesystem::path temporary = path.string() + ".tmp";
    std::error_code ec;
    try {
        detail::write_and_sync(temporary, bytes.view());
        std::filesystem::rename(temporary, path, ec);  // atomic on POSIX within one file system
        if (ec)
            throw Error(detail::concat("Checkpoint: cannot rename '", temporary.string(), "' to '",
                                       path.string(), "': ", ec.message()));
    } catch (...) {
        std::filesystem::remove(temporary, ec);  // no half-written leftovers
        throw;
    }
    const std::filesystem::path directory = path.parent_path();
    detail::sync_directory(directory.empty() ? std::filesystem::path(".") : directory);
}

namespace detail {
/// load_checkpoint from the bytes of a checkpoint in `in`; `source` names them in messages.
template <Optimizer Opt>
CheckpointInfo load_checkpoint_from(std::istream& in, std::string_view source, Opt& opt,
                                    Eigen::Ref<Vec<typename Opt::Scalar>> w) {
    using S = typename Opt::Scalar;
    CheckpointRecord<S> record;
    record.parameters.resize(w.size());  // the shape the saved parameters must have
    try {
        load_state<S>(in, "checkpoint", record);
        std::stringstream before;  // to undo opt.load if the bytes go on after its state
        opt.save(before);
        opt.load(in);  // all or nothing by itself
        if (in.peek() != std::istream::traits_type::eof()) {
            opt.load(before);
            throw CorruptState("the file goes on after the optimizer's state");
        }
    } catch (const CorruptState& e) {
        throw CorruptState(concat("Checkpoint '", source, "' (", w.size(),
                                  " parameters expected): ", e.what()));
    }
    w = record.parameters;  // only once everything was read
    return {record.epoch, record.iteration};
}
}  // namespace detail

/// Restores `w` and the state of `opt` from a checkpoint and says where it was
/// taken. All or nothing: a missing file (or a directory) raises MissingData; a
/// corrupt or mismatched one (truncated, trailing bytes, another optimizer,
/// another parameter count) raises CorruptState naming the file; either way
/// neither `w` nor `opt` changes.
template <Optimizer Opt>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Opt& opt,
                               Eigen::Ref<Vec<typename Opt::Scalar>> w) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))  // which an ifstream opens
        throw MissingData(detail::concat("Checkpoint: '", path.string(), "' is a directory"));
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw MissingData(detail::concat("Checkpoint: cannot open '", path.string(), "'"));
    return detail::load_checkpoint_from(in, path.string(), opt, w);
}

/// A callback that saves a checkpoint to `path` at the end of every `every`-th
/// epoch and of the last one (each overwrites the one before, atomically).
class Checkpoint {
public:
    explicit Checkpoint(std::filesystem::path path, std::int64_t every = 1)
        : path_(std::move(path)), every_(every) {
        detail::require_positive("every", every_);
    }

    template <Optimizer Opt, class S>
    void on_epoch_end(const Opt& opt, const Progress<S>& p, const Eigen::Ref<const Vec<S>>& w) {
        if (due(p))
            save_checkpoint(path_, opt, w, {p.epoch, p.iteration});
    }

    /// Whether a checkpoint is taken at the end of the epoch `p` describes.
    template <class S>
    bool due(const Progress<S>& p) const {
        return p.epoch % every_ == 0 || p.epoch == p.max_epochs;
    }

    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
    std::int64_t every_;
};

}  // namespace scaltra
