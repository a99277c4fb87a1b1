// The same optimizer state on every rank. A learned optimizer run data-parallel
// (data_parallel.hpp) updates its meta-state on every rank from the same averaged
// gradient, so the states stay bit-identical without being communicated, unless
// something breaks that: a rank seeded differently, a non-deterministic objective,
// a rank that loaded another checkpoint. check_state_agreement compares a 64-bit
// hash of every block of the state across ranks (two collectives of a few words)
// and raises StateDivergence naming the first block that differs; the callback
// StateAgreement does so every N steps of a training driver.
//
// The blocks are the state's fields in declaration order ("step", "m", …, nested
// states as "base.step"), a field of the model's size split by the optimizer's
// layout() ("m[W1]") and the learned φ by its meta_layout() ("phi[b:W1]").
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/layout.hpp"
#include "../core/state_io.hpp"
#include "../core/validate.hpp"
#include "../train/progress.hpp"
#include "data_parallel.hpp"

namespace scaltra::dist {

/// The optimizer state is not the same on every rank; block() names the first
/// block that differs, as state_digests names it.
class StateDivergence : public DistributedError {
public:
    StateDivergence(std::string block, const std::string& message)
        : DistributedError(message), block_(std::move(block)) {}
    const std::string& block() const { return block_; }

private:
    std::string block_;
};

/// One block of a state and the hash of its bytes.
struct BlockDigest {
    std::string block;
    std::uint64_t hash;
};

namespace detail {

/// A 64-bit hash of `bytes` bytes, a word at a time (splitmix64's finalizer as the
/// mixer): cheap (about a nanosecond a word), and a changed block goes unnoticed
/// with a chance of about 2⁻⁶⁴. Not cryptographic: it guards against accidents,
/// not adversaries.
inline std::uint64_t hash_bytes(const void* data, std::size_t bytes) {
    auto mix = [](std::uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = mix(bytes + 0x9E3779B97F4A7C15ull);
    std::size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        std::uint64_t word;
        std::memcpy(&word, p + i, 8);
        h = mix(h ^ word) + 0x9E3779B97F4A7C15ull;
    }
    if (i < bytes) {
        std::uint64_t word = 0;
        std::memcpy(&word, p + i, bytes - i);
        h = mix(h ^ word) + 0x9E3779B97F4A7C15ull;
    }
    return mix(h);
}

template <class Dense>
std::uint64_t hash_dense(const Dense& m, Index offset, Index size) {
    return hash_bytes(m.data() + offset, static_cast<std::size_t>(size) * sizeof(*m.data()));
}

/// Appends the digests of `state`'s fields, `prefix` before each name.
template <class State>
void add_digests(std::vector<BlockDigest>& out, const State& state, const std::string& prefix,
                 const Layout* layout, const Layout* meta_layout) {
    for_each_field(state, [&](std::string_view name, const auto& field) {
        using F = std::remove_cvref_t<decltype(field)>;
        const std::string full = prefix + std::string(name);
        if constexpr (StateAggregate<F>) {
            add_digests(out, field, full + ".", layout, nullptr);  // APO's base optimizer
        } else if constexpr (std::is_arithmetic_v<F>) {
            out.push_back({full, hash_bytes(&field, sizeof(F))});
        } else {
            const Layout* split = name == "phi" ? meta_layout : layout;
            if (split != nullptr && split->size() == field.size() && split->num_blocks() > 1) {
                for (const Block& b : split->blocks())
                    out.push_back({scaltra::detail::concat(full, "[", b.name, "]"),
                                   hash_dense(field, b.offset, b.size())});
            } else {
                // The shape too: two ranks with fields of other sizes differ.
                const std::int64_t shape[2] = {field.rows(), field.cols()};
                const std::uint64_t parts[2] = {hash_bytes(shape, sizeof shape),
                                                hash_dense(field, 0, field.size())};
                out.push_back({full, hash_bytes(parts, sizeof parts)});
            }
        }
    });
}

}  // namespace detail

/// The digest of every block of opt's state, in a fixed order (see the top of this file).
template <Optimizer Opt>
std::vector<BlockDigest> state_digests(const Opt& opt) {
    std::vector<BlockDigest> out;
    const Layout* layout = nullptr;
    const Layout* meta_layout = nullptr;
    if constexpr (requires { opt.layout(); })
        layout = &opt.layout();
    if constexpr (requires { opt.meta_layout(); })
        meta_layout = &opt.meta_layout();
    detail::add_digests(out, opt.state(), "", layout, meta_layout);
    return out;
}

namespace detail {
/// Throws StateDivergence on every rank unless `digests` are the same on all
/// ranks of comm (every rank calls it at once): two collectives of a few words.
inline void require_same_digests(const std::vector<BlockDigest>& digests, MPI_Comm comm) {
    // The max of (x, ~x) over the ranks gives both the max and the min of x.
    auto max_and_min = [&](std::vector<std::uint64_t>& words) {
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, words.data(), static_cast<int>(words.size()),
                                MPI_UINT64_T, MPI_MAX, comm),
                  "MPI_Allreduce");
    };
    const auto k = static_cast<std::uint64_t>(digests.size());
    std::vector<std::uint64_t> count{k, ~k};
    max_and_min(count);
    if (count[0] != ~count[1])
        throw StateDivergence("", scaltra::detail::concat(
                                      "Optimizer state differs across ranks: ", k,
                                      " blocks on this rank, between ", ~count[1], " and ",
                                      count[0], " on the ranks"));
    std::vector<std::uint64_t> words(2 * k);
    for (std::size_t i = 0; i < k; ++i) {
        words[i] = digests[i].hash;
        words[k + i] = ~digests[i].hash;
    }
    max_and_min(words);
    for (std::size_t i = 0; i < k; ++i) {
        if (words[i] == ~words[k + i])
            continue;
        // Only on the way to the error: which ranks hold another copy than rank 0.
        const int ranks = size_of(comm);
        std::vector<std::uint64_t> all(static_cast<std::size_t>(ranks));
        std::uint64_t mine = digests[i].hash;
        check_mpi(MPI_Allgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, comm),
                  "MPI_Allgather");
        std::string differ;
        for (int r = 1; r < ranks; ++r)
            if (all[static_cast<std::size_t>(r)] != all[0])
                differ += scaltra::detail::concat(differ.empty() ? "" : ", ", r);
        throw StateDivergence(digests[i].block,
                              scaltra::detail::concat("Optimizer state differs across ranks in "
                                                      "block '", digests[i].block, "': rank(s) ",
                                                      differ, " differ from rank 0"));
    }
}
}  // namespace detail

/// Compares opt's state across the ranks of comm (every rank calls it at once)
/// and throws StateDivergence on every rank, naming the first block that differs
/// and the ranks whose copy differs from rank 0's, when they are not all the same.
/// Costs a hash of the state and two collectives of a few words.
template <Optimizer Opt>
void check_state_agreement(const Opt& opt, MPI_Comm comm = MPI_COMM_WORLD) {
    detail::require_same_digests(state_digests(opt), comm);
}

/// A callback (train/hooks.hpp) that checks the state agreement after every
/// `every`-th step and at the end; a divergence ends the run with StateDivergence
/// on every rank.
class StateAgreement {
public:
    explicit StateAgreement(std::int64_t every, MPI_Comm comm = MPI_COMM_WORLD)
        : every_(every), comm_(comm) {
        scaltra::detail::require_positive("every", every_);
    }

    template <Optimizer Opt, class S>
    void on_step(const Opt& opt, const Progress<S>& p, const Eigen::Ref<const Vec<S>>&) const {
        if (p.iteration % every_ == 0)
            check_state_agreement(opt, comm_);
    }

    template <Optimizer Opt, class S>
    void on_end(const Opt& opt, const Progress<S>&, const Eigen::Ref<const Vec<S>>&) const {
        check_state_agreement(opt, comm_);
    }

private:
    std::int64_t every_;
    MPI_Comm comm_;
};

}  // namespace scaltra::dist
