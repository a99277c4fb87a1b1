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
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/types.hpp"
#include "optimizer_base.hpp"

namespace scaltra::detail {

template <Real S>
class PermutedBlockStack {
public:
    /// n inputs padded to width h (a multiple of k); one permutation of 0..h−1 per layer.
    PermutedBlockStack(Index n, Index k, Index h, const std::vector<std::vector<Index>>& perms)
        : n_(n), k_(k), h_(h), layers_(static_cast<Index>(perms.size())) {
        if (h_ > static_cast<Index>(std::numeric_limits<std::uint32_t>::max()))
            throw InvalidArgument(
                concat("LODO: hidden width ", h_, " exceeds the 32-bit permutation indices"));
        perms_.reserve(static_cast<std::size_t>(layers_ * h_));
        for (const auto& perm : perms)
            for (Index t : perm)
                perms_.push_back(static_cast<std::uint32_t>(t));
    }

    Index layers() const { return layers_; }

    /// Layer i's permutation as row picks.
    std::vector<Index> permutation(Index i) const {
        const auto* p = perm(i);
        return std::vector<Index>(p, p + h_);
    }

    /// out = Eᵀ AᵀA E v (n-vectors): N passes forward, N back.
    void apply_gram(const S* W, const S* v, S* out) const {
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
    double forward_pair(const S* W, const S* m, const S* g) const {
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
                const S* Wi = layer(W, i);
                // Elementwise maxima, reduced once per layer: |W_ij| ≤ w gives
                // ‖W_ij‖₂ ≤ k·w = s_i.
                Eigen::Matrix<S, K, K> w_max = Eigen::Matrix<S, K, K>::Zero(k_, k_);
                Eigen::Matrix<S, 2, K> x_max = Eigen::Matrix<S, 2, K>::Zero(2, k_);
                for (Index j = 0; j < h_; j += k_) {
                    const auto Wj = block_map<K>(Wi + j * k_);
                    const auto Xj = pair_block<K>(X + 2 * j);
                    const Eigen::Matrix<S, K, K> Wt = Wj.transpose();  // column axpys below
                    const Eigen::Matrix<S, K, 1> p = Xj.row(0), q = Xj.row(1);
                    auto out = pair_block<K>(pair_.data() + 2 * j);
                    out.row(0) = (Wt * p).transpose();
                    out.row(1) = (Wt * q).transpose();
                    w_max = w_max.cwiseMax(Wj.cwiseAbs());
                    x_max = x_max.cwiseMax(Xj.cwiseAbs());
                }
                const auto at = static_cast<std::size_t>(i);
                log_scale_[at] = std::log2(static_cast<double>(k_ * w_max.maxCoeff()));
                log_p_[at] = std::log2(static_cast<double>(x_max.row(0).maxCoeff()));
                log_q_[at] = std::log2(static_cast<double>(x_max.row(1).maxCoeff()));
            }
        });
        // From the top: Λ_i = ∏_{l>i} s_l ‖r_N‖ bounds λ_i, Z_i = ∏_{l>i} s_l ‖u_N‖ z_i.
        double log_z = std::log2(static_cast<double>(pairs.row(0).norm()));
        double log_lambda = std::log2(static_cast<double>(pairs.row(1).norm()));
        double bound = std::max(log_lambda, log_z);
        for (Index i = layers_ - 1; i >= 0; --i) {
            const auto at = static_cast<std::size_t>(i);
            const double term =  // a + b ≤ 2 max(a, b)
                std::max(log_p_[at] + log_lambda, log_q_[at] + log_z) + 1.0;
            log_lambda += log_scale_[at];
            log_z += log_scale_[at];
            bound = std::max({bound, term, log_lambda, log_z});
        }
        return std::isnan(bound) ? std::numeric_limits<double>::infinity() : bound;
    }

    /// The backward pass after forward_pair(W, …): for each layer from the top, for
    /// each chunk of its blocks, forms scale·(1) in a buffer and calls
    /// visit(offset, gradient) with the chunk's offset into W (its length the
    /// buffer's); the visitor may change W's chunk, the pass has read it already.
    /// The adjoints run interleaved as (z; λ), starting from (u_N; r_N).
    template <class Visit>
    void backward_pair(const S* W, S scale, Visit&& visit) const {
        const Index per_chunk = std::max<Index>(1, kChunk / (k_ * k_)) * k_;  // entries of h
        with_block_size([&](auto block) {
            constexpr int K = decltype(block)::value;
            for (Index i = layers_ - 1; i >= 0; --i) {
                const S* Wi = layer(W, i);
                const S* X = stored(i);
                for (Index j0 = 0; j0 < h_; j0 += per_chunk) {
                    const Index j1 = std::min(h_, j0 + per_chunk);
                    for (Index j = j0; j < j1; j += k_) {
                        // The rows as contiguous k-vectors: the products below are then
                        // column axpys, which Eigen vectorises.
                        const Eigen::Matrix<S, K, 1> p = pair_block<K>(X + 2 * j).row(0),
                                                     q = pair_block<K>(X + 2 * j).row(1);
                        auto Yj = pair_block<K>(pair_.data() + 2 * j);
                        const Eigen::Matrix<S, K, 1> z = Yj.row(0), lambda = scale * Yj.row(1);
                        auto G = block_map<K>(gradient_.data() + (j - j0) * k_);
                        for (Index c = 0; c < k_; ++c)
                            G.col(c) = p * lambda(c) + scale * z(c) * q;
                        const auto Wj = block_map<K>(Wi + j * k_);
                        auto out = pair_block<K>(spare_.data() + 2 * j);
                        out.row(0) = (Wj * z).transpose();
                        out.row(1) = (Wj * Yj.row(1).transpose()).transpose();
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
    const S* layer(const S* W, Index i) const { return W + i * h_ * k_; }

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

    void gather_pairs(const S* u, const std::uint32_t* perm, S* out) const {
        for (Index t = 0; t < h_; ++t) {
            out[2 * t] = u[2 * perm[t]];
            out[2 * t + 1] = u[2 * perm[t] + 1];
        }
    }
    void scatter_pairs(const S* y, const std::uint32_t* perm, S* out) const {
        for (Index t = 0; t < h_; ++t) {
            out[2 * perm[t]] = y[2 * t];
            out[2 * perm[t] + 1] = y[2 * t + 1];
        }
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
    void blocks_transposed(const S* Wi, const S* in, S* out) const {
        for (Index j = 0; j < h_; j += k_) {
            const Eigen::Matrix<S, K, K> Wt = block_map<K>(Wi + j * k_).transpose();
            vec_map<K>(out + j).noalias() = Wt * vec_map<K>(in + j);  // column axpys
        }
    }
    /// out_j = W_j in_j for every block j.
    template <int K>
    void blocks(const S* Wi, const S* in, S* out) const {
        for (Index j = 0; j < h_; j += k_)
            vec_map<K>(out + j).noalias() = block_map<K>(Wi + j * k_) * vec_map<K>(in + j);
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
            gradient_.resize(std::max<Index>(1, kChunk / (k_ * k_)) * k_ * k_);
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
