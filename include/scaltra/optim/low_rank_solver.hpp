// Solves with a low-rank-plus-identity curvature A = B Bᵀ + τI_p (B p×r) for a
// right-hand side V (p×c), and the hypergradient of the step −γD, D = A⁻¹V, for
// SCALTRA's rank-r and per-matrix curvatures (ALGORITHMS.md, "SCALTRA").
//
// When r < p, through the r×r capacitance matrix K = τI_r + BᵀB (Woodbury):
//   D = (V − B S)/τ,  S = K⁻¹BᵀV,
// and, because Bᵀ A⁻¹ = K⁻¹Bᵀ, S = BᵀD and S_g = K⁻¹BᵀG = BᵀU for U = A⁻¹G, so
//   ∂⟨G, −γD⟩/∂B = γ(U Dᵀ + D Uᵀ)B = γ(U Sᵀ + D S_gᵀ)
// with products of size p×c×r only. When r ≥ p, by a p×p Cholesky of A itself and
// ∂⟨G, −γD⟩/∂B = γ(U Dᵀ + D Uᵀ)B. Either way ∂⟨G, −γD⟩/∂τ = γ⟨U, D⟩.
//
// LowRankSolver takes any shape: every product goes through a GemmWorkspace and
// the inverse of the factored matrix is formed by vector solves (Eigen's
// triangular solve with a matrix right-hand side allocates its packing buffers
// on every call), so after the first call nothing allocates. The B, τ and V
// that D was made from are kept: the hypergradient of a move reuses D when they
// are still bit-identical. StreamingWoodbury serves a block taken as one column
// (c = 1, r < p, a long vector at rank r > 1) in passes over B, a chunk at a
// time, with no p-sized scratch: one pass for the Gram products BᵀB, Bᵀv (and
// Bᵀg), one for the update (or for ∂B and ⟨u, d⟩).
//
// A solve that overflows the scalar range (a state far outside it) takes the
// isotropic step V/τ instead, and B then gets no hypergradient: NaN never
// reaches x from here.
#pragma once

#include <array>

#include <Eigen/Cholesky>

#include "../autodiff/gemm.hpp"
#include "../core/types.hpp"
#include "optimizer_base.hpp"

namespace scaltra::detail {

template <class S>
class LowRankSolver {
public:
    LowRankSolver(Index p, Index r, Index c)
        : woodbury_(r < p),
          F_(Mat<S>::Identity(woodbury_ ? r : p, woodbury_ ? r : p)),
          llt_(F_),  // of I: every member of the factor set before any copy
          inverse_(F_.rows(), F_.cols()),
          D_(p, c),
          U_(p, c),
          T_(woodbury_ ? r : 0, c),
          Sv_(woodbury_ ? r : 0, c),
          Sg_(woodbury_ ? r : 0, c),
          C_(woodbury_ ? 0 : p, woodbury_ ? 0 : p),
          B_used_(p, r),
          V_used_(p, c) {}

    /// D = (B Bᵀ + τI)⁻¹ V.
    template <class MB, class MV>
    const Mat<S>& solve(const MB& B, S tau, const MV& V) {
        if (tau == tau_used_ && B == B_used_ && V == V_used_)
            return D_;
        B_used_ = B;
        V_used_ = V;
        tau_used_ = tau;
        if (woodbury_)
            gemm_.multiply(B, true, B, false, F_, false);  // BᵀB
        else
            gemm_.multiply(B, false, B, true, F_, false);  // B Bᵀ
        F_.diagonal().array() += tau;
        llt_.compute(F_);  // positive definite: τ > 0
        inverse_.setIdentity();
        for (Index j = 0; j < inverse_.cols(); ++j) {
            auto column = inverse_.col(j);
            llt_.solveInPlace(column);
        }
        if (woodbury_) {
            gemm_.multiply(B, true, V, false, T_, false);
            gemm_.multiply(inverse_, false, T_, false, Sv_, false);  // S = K⁻¹BᵀV
            gemm_.multiply(B, false, Sv_, false, D_, false);
            D_ = (V - D_) / tau;
        } else {
            gemm_.multiply(inverse_, false, V, false, D_, false);
        }
        isotropic_ = !D_.allFinite();  // overflowed: the isotropic step V/τ instead
        if (isotropic_)
            D_ = V / tau;
        return D_;
    }

    /// Writes ∂⟨G, −γD⟩/∂B into hB (p×r) and returns ∂⟨G, −γD⟩/∂τ.
    template <class MB, class MV, class MG, class MH>
    S hypergradient(const MB& B, S tau, const MV& V, const MG& G, S gamma, MH&& hB) {
        solve(B, tau, V);
        if (isotropic_) {  // the step was V/τ: B played no part
            U_ = G / tau;
            hB.setZero();
            return gamma * U_.cwiseProduct(D_).sum();
        }
        if (woodbury_) {
            gemm_.multiply(B, true, G, false, T_, false);
            gemm_.multiply(inverse_, false, T_, false, Sg_, false);  // S_g = K⁻¹BᵀG
            gemm_.multiply(B, false, Sg_, false, U_, false);
            U_ = (G - U_) / tau;
            gemm_.multiply(U_, false, Sv_, true, hB, false);
            gemm_.multiply(D_, false, Sg_, true, hB, true);  // U Sᵀ + D S_gᵀ
        } else {
            gemm_.multiply(inverse_, false, G, false, U_, false);
            gemm_.multiply(U_, false, D_, true, C_, false);
            F_ = C_ + C_.transpose();  // U Dᵀ + D Uᵀ (F is free once factored)
            gemm_.multiply(F_, false, B, false, hB, false);
        }
        hB *= gamma;
        return gamma * U_.cwiseProduct(D_).sum();
    }

private:
    bool woodbury_;
    Mat<S> F_;  // K = τI_r + BᵀB (Woodbury) or A = B Bᵀ + τI_p, then scratch
    Eigen::LLT<Mat<S>> llt_;
    Mat<S> inverse_, D_, U_;
    Mat<S> T_, Sv_, Sg_;  // Woodbury: BᵀV or BᵀG, S = K⁻¹BᵀV, S_g = K⁻¹BᵀG
    Mat<S> C_;            // direct: U Dᵀ
    Mat<S> B_used_, V_used_;
    S tau_used_ = S(-1);  // no τ is negative: nothing solved yet
    bool isotropic_ = false;
    ad::detail::GemmWorkspace<S> gemm_;
};

template <class S>
class StreamingWoodbury {
public:
    explicit StreamingWoodbury(Index r)
        : K_(Mat<S>::Identity(r, r)), llt_(K_), s_v_(r), s_g_(r), t_v_(r), t_g_(r) {}

    /// target += α (B Bᵀ + τI)⁻¹ v = α (v − B s)/τ, s = K⁻¹Bᵀv.
    template <class MB, class V, class T>
    void add_solve(const MB& B, S tau, const V& v, S alpha, T&& target) {
        gram(B, tau, v, v, false);
        std::array<S, kChunk> buffer;
        for_each_chunk(v.size(), [&](Index i, Index n) {
            Eigen::Map<Vec<S>> d(buffer.data(), n);
            d = v.segment(i, n);
            for (Index j = 0; j < B.cols(); ++j)
                d -= s_v_[j] * B.col(j).segment(i, n);
            target.segment(i, n) += (alpha / tau) * d;
        });
    }

    /// hB = γ(u s_vᵀ + d s_gᵀ) (B's shape), returns γ⟨u, d⟩, for d = A⁻¹v, u = A⁻¹g.
    template <class MB, class V, class G, class MH>
    S hypergradient(const MB& B, S tau, const V& v, const G& g, S gamma, MH&& hB) {
        gram(B, tau, v, g, true);
        std::array<S, kChunk> d_buffer, u_buffer;
        S ud = S(0);
        for_each_chunk(v.size(), [&](Index i, Index n) {
            Eigen::Map<Vec<S>> d(d_buffer.data(), n), u(u_buffer.data(), n);
            d = v.segment(i, n);
            u = g.segment(i, n);
            for (Index j = 0; j < B.cols(); ++j) {
                d -= s_v_[j] * B.col(j).segment(i, n);
                u -= s_g_[j] * B.col(j).segment(i, n);
            }
            d /= tau;
            u /= tau;
            for (Index j = 0; j < B.cols(); ++j)
                hB.col(j).segment(i, n) = (gamma * s_v_[j]) * u + (gamma * s_g_[j]) * d;
            ud += u.dot(d);
        });
        return gamma * ud;
    }

private:
    /// One pass: K = τI + BᵀB, t_v = Bᵀv (and t_g = Bᵀg), then s_v = K⁻¹t_v (and s_g).
    template <class MB, class V, class G>
    void gram(const MB& B, S tau, const V& v, const G& g, bool with_g) {
        const Index r = B.cols();
        K_.setZero();
        t_v_.setZero();
        t_g_.setZero();
        for_each_chunk(v.size(), [&](Index i, Index n) {
            for (Index j = 0; j < r; ++j) {
                const auto bj = B.col(j).segment(i, n);
                for (Index k = 0; k <= j; ++k)
                    K_(j, k) += bj.dot(B.col(k).segment(i, n));
                t_v_[j] += bj.dot(v.segment(i, n));
                if (with_g)
                    t_g_[j] += bj.dot(g.segment(i, n));
            }
        });
        K_.diagonal().array() += tau;
        llt_.compute(K_);  // reads the lower triangle, filled above
        s_v_ = t_v_;
        llt_.solveInPlace(s_v_);
        s_g_ = t_g_;
        if (with_g)
            llt_.solveInPlace(s_g_);
        if (!s_v_.allFinite()) {  // overflowed: the isotropic step v/τ, B plays no part
            s_v_.setZero();
            s_g_.setZero();
        }
    }

    Mat<S> K_;
    Eigen::LLT<Mat<S>> llt_;
    Vec<S> s_v_, s_g_, t_v_, t_g_;
};

}  // namespace scaltra::detail
