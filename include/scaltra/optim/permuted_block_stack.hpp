// LODO's A = L_N ⋯ L_1, L_i(v) = blockdiag(W_i)ᵀ P_i v, in closed form: the
// products with G = EᵀAᵀA E and the hypergradient of ⟨g, G m⟩, in passes over the
// blocks with no tape and no allocation after the first call (lodo.hpp is the
// rule; its tape recording is the reference these passes are tested against).
//
// W holds the N layers one after another, each k×h column-major, so layer i's
// block j is the k×k matrix at W + (i·h + j·k)·k. A permutation is kept as row
// picks, (P v)[t] = v[perm[t]], and Pᵀ scatters: (Pᵀ y)[perm[t]] = y[t].
//
// Hypergradient. With u_0 = E m, r_0 = E g, p_i = P_i u_{i−1}, q_i = P_i r_{i−1},
// u_i = B_iᵀ p_i, r_i = B_iᵀ q_i (B_i = blockdiag(W_i)), ⟨g, G m⟩/α₀ = ⟨r_N, u_N⟩.
// Its adjoints z_i = ∂/∂r_i and λ_i = ∂/∂u_i start at z_N = u_N, λ_N = r_N and
// run back as z_{i−1} = P_iᵀ B_i z_i (this is also the Aᵀ of the move), so
//   ∂⟨r_N, u_N⟩/∂W_ij = p_ij λ_ijᵀ + q_ij z_ijᵀ                         (1)
// for the k-vectors of block j. One pass forward stores p_i and q_i; one pass
// back forms (1) a chunk of blocks at a time and hands it to a visitor, which
// may then change those blocks (a fused meta-step): each block is read before.
//
// W is stored as T: S, or bfloat16 (LODO's compact θ); the passes widen each
// block to S as they load it and compute in S.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../core/bfloat16.hpp"
#include "../core/error.hpp"
#include "../core/types.hpp"
#include "optimizer_base.hpp"

namespace scaltra::detail {

/// The largest block size k of LODO's layers (its kernels keep k×k locals inline).
inline constexpr int kMaxLodoBlock = 32;

/// The stages of the radix-k butterfly over h/k blocks: the smallest D ≥ 1 with
/// k^D ≥ h/k (1 for k = 1). Where h/k is a power of k, its D stages and one more
/// (D + 1 layers) connect every output of A to every input; otherwise the cut-short
/// groups take more layers, at most 2D in the tests.
inline Index butterfly_depth(Index h, Index k) {
    Index depth = 1;
    for (Index reach = k; k > 1 && reach < h / k; reach *= k)
        ++depth;
    return depth;
}

/// Stage l of the radix-k butterfly over the h/k blocks of k entries, as row picks:
/// a permutation with locality, in place of a random one. With s = k^l, block
/// j = (c·k + d)·s + o (d < k, o < s) is block d of group (c, o); a group has m ≤ k
/// blocks (fewer only where h/k ends it). Numbering its m·k entries e = d·k + slot,
/// entry e picks block e mod m, slot ⌊e/m⌋ of its group: for m = k the transpose of
/// the group's k×k entries, so each block draws one entry from every block of its
/// group. Consecutive blocks draw from k runs of consecutive blocks s apart, so a
/// pass over h streams where a random permutation jumps.
inline std::vector<Index> butterfly_permutation(Index h, Index k, Index stage) {
    const Index blocks = h / k;
    Index s = 1;
    for (Index l = 0; l < stage; ++l)
        s *= k;
    std::vector<Index> picks(static_cast<std::size_t>(h));
    for (Index j = 0; j < blocks; ++j) {
        const Index d = (j / s) % k, first = j - d * s;  // first: block 0 of j's group
        const Index m = std::min(k, (blocks - first + s - 1) / s);
        for (Index slot = 0; slot < k; ++slot) {
            const Index e = d * k + slot;
            picks[static_cast<std::size_t>(j * k + slot)] = (first + (e % m) * s) * k + e / m;
        }
    }
    return picks;
}

template <Real S, StorageOf<S> T = S>
class PermutedBlockStack {
public:
    /// n inputs padded to width h (a multiple of k, k ≤ kMaxLodoBlock); `layers`
    /// permutations of 0..h−1, layer i's permutation_of(i) (row picks), called for
    /// i = 0, 1, … in turn.
    template <class PermutationOf>
    PermutedBlockStack(Index n, Index k, Index h, Index layers, PermutationOf&& permutation_of)
        : n_(n), k_(k), h_(h), layers_(layers) {
        if (layers_ > 0 && h_ > static_cast<Index>(std::numeric_limits<std::int32_t>::max()))
            throw InvalidArgument(
                concat("LODO: hidden width ", h_, " exceeds the 32-bit permutation indices"));
        perms_.reserve(static_cast<std::size_t>(layers_ * h_));
        for (Index i = 0; i < layers_; ++i)
            for (Index t : permutation_of(i))
                perms_.push_back(static_cast<std::uint32_t>(t));
    }

    Index layers() const { return layers_; }

    /// Layer i's permutation as row picks.
    std::vector<Index> permutation(Index i) const {
        const auto* p = perm(i);
        return std::vector<Index>(p, p + h_);
    }

    /// The permutations as the columns of an h×N matrix (LODO's state).
    IndexMat permutations() const {
        IndexMat out(layers_ > 0 ? h_ : 0, layers_);
        for (Index i = 0; i < layers_; ++i)
            for (Index t = 0; t < h_; ++t)
                out(t, i) = static_cast<std::int32_t>(perm(i)[t]);
        return out;
    }

    /// Takes the columns of `perms` (h×N, each a permutation of 0..h−1, which the
    /// caller has checked) as the layers' permutations; allocates nothing.
    void set_permutations(const IndexMat& perms) {
        for (Index i = 0; i < layers_; ++i)
            for (Index t = 0; t < h_; ++t)
                perms_[static_cast<std::size_t>(i * h_ + t)] =
                    static_cast<std::uint32_t>(perms(t, i));
    }

    /// out = Eᵀ AᵀA E v (n-vectors): N passes forward, N back.
    void apply_gram(const T* W, const S* v, S* out) const {
        reserve(false);
        Vec<S>& u = a_;
        u.head(n_) = Eigen::Map<const Vec<S>>(v, n_);
        u.tail(h_ - n_).setZero();
        with_block_size([&](auto block) {
            constexpr int K = decltype(block)::value;
            for (Index i = 0; i < layers_; ++i) {
                gather(u.data(), perm(i), picked_.data());
                blocks_transposed<K>(layer(W, i), picked_.data(), u.data());
            }
            for (Index i = layers_ - 1; i >= 0; --i) {
                blocks<K>(layer(W, i), u.data(), picked_.data());
                scatter(picked_.data(), perm(i), u.data());
            }
        });
        Eigen::Map<Vec<S>>(out, n_) = u.head(n_);
    }

    /// The forward pass of the hypergradient of ⟨g, G m⟩: stores p_i, q_i, u_N, r_N
    /// and returns log₂ of a bound on every entry of (1) and every adjoint, so a
    /// caller can prove the backward pass finite before it changes anything:
    /// ‖B_i‖₂ ≤ s_i = k·max|W_i| bounds the adjoints by ∏_{l>i} s_l ‖r_N‖₂ (and
    /// ‖u_N‖₂); p_i and q_i are bounded by their largest entries.
    /// The two paths run interleaved, (u, r) as the rows of a 2×h matrix, so a
    /// permutation costs one random access per pair, and block j of both is one
    /// 2×k by k×k product.
    /// `scale` is the backward pass's (the bound covers scale·(1) too).
    double forward_pair(const T* W, const S* m, const S* g, S scale) const {
        reserve(true);
        auto pairs = pair_map(pair_.data());
        pairs.row(0).head(n_) = Eigen::Map<const Vec<S>>(m, n_).transpose();
        pairs.row(1).head(n_) = Eigen::Map<const Vec<S>>(g, n_).transpose();
        pairs.rightCols(h_ - n_).setZero();
        with_block_size([&](auto block) {
            constexpr int K = decltype(block)::value;
            for (Index i = 0; i < layers_; ++i) {
                S* X = stored(i);  // (p_i; q_i)
                gather_pairs(pair_.data(), perm(i), X);
                const T* Wi = layer(W, i);
                // Elementwise maxima, reduced once per layer: |W_ij| ≤ w gives
                // ‖W_ij‖₂ ≤ k·w = s_i.
                // cwiseMax may drop a NaN; x − x is 0 while x is finite, NaN after.
                BlockMat<K> w_max = BlockMat<K>::Zero(k_, k_), w_nan = w_max;
                PairMat<K> x_max = PairMat<K>::Zero(2, k_), x_nan = x_max;
                for (Index j = 0; j < h_; j += k_) {
                    const auto Wj = load_block<K>(Wi + j * k_);
                    const auto Xj = pair_block<K>(X + 2 * j);
                    const BlockMat<K> Wt = Wj.transpose();  // column axpys below
                    const BlockVec<K> p = Xj.row(0), q = Xj.row(1);
                    auto out = pair_block<K>(pair_.data() + 2 * j);
                    out.row(0) = Wt.lazyProduct(p).transpose();
                    out.row(1) = Wt.lazyProduct(q).transpose();
                    w_max = w_max.cwiseMax(Wj.cwiseAbs());
                    x_max = x_max.cwiseMax(Xj.cwiseAbs());
                    w_nan += Wj - Wj;
                    x_nan += Xj - Xj;
                }
                const auto at = static_cast<std::size_t>(i);
                const S nan = w_nan.sum() + x_nan.sum();  // 0, or NaN
                log_scale_[at] = log2_of(S(k_) * w_max.maxCoeff() + nan);
                log_p_[at] = log2_of(x_max.row(0).maxCoeff() + nan);
                log_q_[at] = log2_of(x_max.row(1).maxCoeff() + nan);
            }
        });
        // From the top: Λ_i = ∏_{l>i} s_l ‖r_N‖₂ bounds λ_i, Z_i = ∏_{l>i} s_l ‖u_N‖₂
        // z_i, with ‖v‖₂ ≤ √h·max|v| (a norm itself could under- or overflow). Any
        // NaN (inf − inf, or a NaN in θ) makes the bound infinite.
        auto worse = [](double a, double b) {
            return std::isnan(a) || std::isnan(b) ? std::numeric_limits<double>::quiet_NaN()
                                                  : std::max(a, b);
        };
        const double log_root_h = 0.5 * std::log2(static_cast<double>(h_));
        const double log_scale = std::log2(std::abs(static_cast<double>(scale)));
        double log_z =
            log2_of(pairs.row(0).cwiseAbs().template maxCoeff<Eigen::PropagateNaN>()) + log_root_h;
        double log_lambda =
            log2_of(pairs.row(1).cwiseAbs().template maxCoeff<Eigen::PropagateNaN>()) + log_root_h;
        double bound = worse(log_lambda, log_z);
        for (Index i = layers_ - 1; i >= 0; --i) {
            const auto at = static_cast<std::size_t>(i);
            const double term =  // |scale|·(a + b) ≤ |scale|·2 max(a, b)
                worse(log_p_[at] + log_lambda, log_q_[at] + log_z) + 1.0 + log_scale;
            log_lambda += log_scale_[at];
            log_z += log_scale_[at];
            bound = worse(worse(bound, term), worse(log_lambda, log_z));
        }
        bound += std::max(0.0, log_scale);  // the pass also forms scale·λ_i and scale·z_i
        return std::isnan(bound) ? std::numeric_limits<double>::infinity() : bound;
    }

    /// The backward pass after forward_pair(W, …): for each layer from the top, for
    /// each chunk of its blocks, forms scale·(1) in a buffer and calls
    /// visit(offset, gradient) with the chunk's offset into W (its length the
    /// buffer's); the visitor may change W's chunk, the pass has read it already.
    /// The adjoints run interleaved as (z; λ), starting from (u_N; r_N).
    template <class Visit>
    void backward_pair(const T* W, S scale, Visit&& visit) const {
        const Index per_chunk = blocks_per_chunk() * k_;  // entries of h
        with_block_size([&](auto block) {
            constexpr int K = decltype(block)::value;
            for (Index i = layers_ - 1; i >= 0; --i) {
                const T* Wi = layer(W, i);
                const S* X = stored(i);
                for (Index j0 = 0; j0 < h_; j0 += per_chunk) {
                    const Index j1 = std::min(h_, j0 + per_chunk);
                    for (Index j = j0; j < j1; j += k_) {
                        // The rows as contiguous k-vectors: the products below are then
                        // column axpys, which Eigen vectorises.
                        const BlockVec<K> p = pair_block<K>(X + 2 * j).row(0),
                                          q = pair_block<K>(X + 2 * j).row(1);
                        auto Yj = pair_block<K>(pair_.data() + 2 * j);
                        const BlockVec<K> z = Yj.row(0), lambda = scale * Yj.row(1);
                        auto G = block_map<K>(gradient_.data() + (j - j0) * k_);
                        for (Index c = 0; c < k_; ++c)
                            G.col(c) = p * lambda(c) + scale * z(c) * q;
                        const auto Wj = load_block<K>(Wi + j * k_);
                        auto out = pair_block<K>(spare_.data() + 2 * j);
                        out.row(0) = Wj.lazyProduct(z).transpose();
                        out.row(1) = Wj.lazyProduct(Yj.row(1).transpose()).transpose();
                    }
                    visit((i * h_ + j0) * k_,
                          Eigen::Map<const Vec<S>>(gradient_.data(), (j1 - j0) * k_));
                }
                scatter_pairs(spare_.data(), perm(i), pair_.data());
            }
        });
    }

private:
    const std::uint32_t* perm(Index i) const { return perms_.data() + i * h_; }
    const T* layer(const T* W, Index i) const { return W + i * h_ * k_; }

    /// Locals of a block's size: fixed for the common k, else dynamic with inline
    /// storage of at most kMaxLodoBlock; with coefficient-wise (lazy) products no
    /// block size allocates.
    static constexpr int max_of(int K) { return K == Eigen::Dynamic ? kMaxLodoBlock : K; }
    template <int K>
    using BlockMat = Eigen::Matrix<S, K, K, Eigen::ColMajor, max_of(K), max_of(K)>;
    template <int K>
    using BlockVec = Eigen::Matrix<S, K, 1, Eigen::ColMajor, max_of(K), 1>;
    template <int K>
    using PairMat = Eigen::Matrix<S, 2, K, Eigen::ColMajor, 2, max_of(K)>;

    /// The backward pass's chunk: as many whole blocks as fit kChunk entries (at least one).
    Index blocks_per_chunk() const { return std::max<Index>(1, kChunk / (k_ * k_)); }

    static double log2_of(S v) { return std::log2(static_cast<double>(v)); }

    /// Calls f(K) with k as a compile-time constant where it is a common one (the
    /// fixed-size products are several times faster), else Eigen::Dynamic.
    template <class F>
    void with_block_size(F&& f) const {
        switch (k_) {
            case 2:
                f(std::integral_constant<int, 2>{});
                break;
            case 4:
                f(std::integral_constant<int, 4>{});
                break;
            case 8:
                f(std::integral_constant<int, 8>{});
                break;
            default:
                f(std::integral_constant<int, Eigen::Dynamic>{});
        }
    }
    template <int K>
    auto block_map(const S* at) const {
        return Eigen::Map<const Eigen::Matrix<S, K, K>>(at, k_, k_);
    }
    template <int K>
    auto block_map(S* at) const {
        return Eigen::Map<Eigen::Matrix<S, K, K>>(at, k_, k_);
    }
    /// A block of W: the stored block itself for T = S, else widened into a local.
    template <int K>
    auto load_block(const T* at) const {
        if constexpr (std::is_same_v<T, S>) {
            return block_map<K>(at);
        } else {
            BlockMat<K> block(k_, k_);
            // A compile-time count for a fixed K, so that the widening vectorises.
            widen_into(at, block.data(), K == Eigen::Dynamic ? k_ * k_ : Index{K} * K);
            return block;
        }
    }
    template <int K>
    auto vec_map(const S* at) const {
        return Eigen::Map<const Eigen::Matrix<S, K, 1>>(at, k_);
    }
    template <int K>
    auto vec_map(S* at) const {
        return Eigen::Map<Eigen::Matrix<S, K, 1>>(at, k_);
    }

    auto pair_map(S* at) const {
        return Eigen::Map<Eigen::Matrix<S, 2, Eigen::Dynamic>>(at, 2, h_);
    }
    template <int K>
    auto pair_block(const S* at) const {
        return Eigen::Map<const Eigen::Matrix<S, 2, K>>(at, 2, k_);
    }
    template <int K>
    auto pair_block(S* at) const {
        return Eigen::Map<Eigen::Matrix<S, 2, K>>(at, 2, k_);
    }
    S* stored(Index i) const { return stored_.data() + 2 * i * h_; }

    // A pair moves as one 2·sizeof(S)-byte copy: one load and one store per
    // entry of h, which halves the time of the random passes.
    void gather_pairs(const S* u, const std::uint32_t* perm, S* out) const {
        for (Index t = 0; t < h_; ++t)
            std::memcpy(out + 2 * t, u + 2 * static_cast<Index>(perm[t]), 2 * sizeof(S));
    }
    void scatter_pairs(const S* y, const std::uint32_t* perm, S* out) const {
        for (Index t = 0; t < h_; ++t)
            std::memcpy(out + 2 * static_cast<Index>(perm[t]), y + 2 * t, 2 * sizeof(S));
    }
    void gather(const S* u, const std::uint32_t* perm, S* out) const {
        for (Index t = 0; t < h_; ++t)
            out[t] = u[perm[t]];
    }
    void scatter(const S* y, const std::uint32_t* perm, S* out) const {
        for (Index t = 0; t < h_; ++t)
            out[perm[t]] = y[t];
    }
    /// out_j = W_jᵀ in_j for every block j.
    template <int K>
    void blocks_transposed(const T* Wi, const S* in, S* out) const {
        for (Index j = 0; j < h_; j += k_) {
            const BlockMat<K> Wt = load_block<K>(Wi + j * k_).transpose();
            vec_map<K>(out + j).noalias() = Wt.lazyProduct(vec_map<K>(in + j));  // column axpys
        }
    }
    /// out_j = W_j in_j for every block j.
    template <int K>
    void blocks(const T* Wi, const S* in, S* out) const {
        for (Index j = 0; j < h_; j += k_)
            vec_map<K>(out + j).noalias() =
                load_block<K>(Wi + j * k_).lazyProduct(vec_map<K>(in + j));
    }
    /// Scratch, sized on first use (the pair's stores only if a hypergradient is taken).
    void reserve(bool pair) const {
        if (a_.size() == 0) {
            a_.resize(h_);
            picked_.resize(h_);
        }
        if (pair && stored_.size() == 0) {
            pair_.resize(2 * h_);
            spare_.resize(2 * h_);
            stored_.resize(2 * layers_ * h_);
            gradient_.resize(blocks_per_chunk() * k_ * k_);
            log_scale_.resize(static_cast<std::size_t>(layers_));
            log_p_.resize(static_cast<std::size_t>(layers_));
            log_q_.resize(static_cast<std::size_t>(layers_));
        }
    }

    Index n_, k_, h_, layers_;
    std::vector<std::uint32_t> perms_;                 // layer after layer, h entries each
    mutable Vec<S> a_, picked_;                        // the move's path
    mutable Vec<S> pair_, spare_, stored_, gradient_;  // the hypergradient's (stored: p_i, q_i)
    mutable std::vector<double> log_scale_, log_p_, log_q_;
};

}  // namespace scaltra::detail
