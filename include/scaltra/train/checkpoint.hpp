// Checkpoints: the parameters, the optimizer's state and how far training got,
// in one file written atomically (a temporary file in the same directory, then
// a rename), so a crash mid-write leaves the previous checkpoint intact.
//
// File: a state record named "checkpoint" in the format of core/state_io.hpp
// (fields epoch, iteration, parameters), followed by the optimizer's own saved
// state. Loading checks both before it changes anything.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <tuple>

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
}  // namespace detail

/// Writes parameters `w`, the state of `opt` and `info` to `path`, atomically.
template <Optimizer Opt>
void save_checkpoint(const std::filesystem::path& path, const Opt& opt,
                     const Eigen::Ref<const Vec<typename Opt::Scalar>>& w, CheckpointInfo info) {
    using S = typename Opt::Scalar;
    const std::filesystem::path temporary = path.string() + ".tmp";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out)
            throw Error(detail::concat("Checkpoint: cannot open '", temporary.string(),
                                       "' for writing"));
        save_state<S>(out, "checkpoint",
                      detail::CheckpointRecord<S>{info.epoch, info.iteration, w});
        opt.save(out);
        out.close();
        if (!out)
            throw Error(detail::concat("Checkpoint: writing '", temporary.string(), "' failed"));
    }
    std::error_code ec;
    std::filesystem::rename(temporary, path, ec);  // atomic on POSIX within one file system
    if (ec)
        throw Error(detail::concat("Checkpoint: cannot rename '", temporary.string(), "' to '",
                                   path.string(), "': ", ec.message()));
}

/// Restores `w` and the state of `opt` from a checkpoint and says where it was
/// taken. All or nothing: on a missing, corrupt or mismatched file (another
/// optimizer, another parameter count) it throws and changes neither.
template <Optimizer Opt>
CheckpointInfo load_checkpoint(const std::filesystem::path& path, Opt& opt,
                               Eigen::Ref<Vec<typename Opt::Scalar>> w) {
    using S = typename Opt::Scalar;
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw MissingData(detail::concat("Checkpoint: cannot open '", path.string(), "'"));
    detail::CheckpointRecord<S> record;
    record.parameters.resize(w.size());  // the shape the saved parameters must have
    load_state<S>(in, "checkpoint", record);
    opt.load(in);  // all or nothing; w is changed only after it succeeded
    w = record.parameters;
    return {record.epoch, record.iteration};
}

/// A callback that saves a checkpoint to `path` at the end of every `every`-th
/// epoch (each overwrites the last, atomically).
class Checkpoint {
public:
    explicit Checkpoint(std::filesystem::path path, std::int64_t every = 1)
        : path_(std::move(path)), every_(every) {
        detail::require_positive("every", every_);
    }

    template <Optimizer Opt, class S>
    void on_epoch_end(const Opt& opt, const Progress<S>& p, const Eigen::Ref<const Vec<S>>& w) {
        if (p.epoch % every_ == 0)
            save_checkpoint(path_, opt, w, {p.epoch, p.iteration});
    }

    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
    std::int64_t every_;
};

}  // namespace scaltra
