// SCALTRA: successive convex approximation with a learned per-layer curvature
// (the SCALTRA note; ALGORITHMS.md, "SCALTRA"). For every block of the Layout
// (a layer's weights, its bias) the surrogate
//   L(wₜ) + ∇L(wₜ)ᵀ(w − wₜ) + ½(w − wₜ)ᵀ(b bᵀ + τI)(w − wₜ)
// is minimised with the momentum m in place of the gradient, and the step is
// smoothed by γₜ:
//   m ← βm + (1−β)g,   d = (b bᵀ + τI)⁻¹ m = (m − b (bᵀm)/(τ + ‖b‖²)) / τ,   w ← w − γₜ d
// (Sherman–Morrison; O(n), no matrix is formed). b and τ = softplus(ρ) + τ_min are
// learned online by the meta-optimizer from the hypergradient of the last step
// (online_meta.hpp), in closed form, with u = (b bᵀ + τI)⁻¹ g⁺:
//   ∂L/∂b = γ[(bᵀd) u + (bᵀu) d],   ∂L/∂τ = γ uᵀd,   ∂L/∂ρ = ∂L/∂τ · sigmoid(ρ).
// γ decreases by the SCA rule γₜ₊₁ = γₜ(1 − εγₜ) (Σγ = ∞, Σγ² < ∞), or
// geometrically γₜ₊₁ = δγₜ (the author's notebook: δ = 0.9, γ₀ = 0.9). τ₀ = γ₀/α₀,
// α₀ the note's initial learning rate; b starts small and random (at b = 0 its
// hypergradient is exactly 0, so it would never move).
//
// Curvature::per_matrix (the author's reference variant) learns, for a p×q weight
// matrix W, a B of W's shape and the curvature A = B Bᵀ + τI_p shared by W's
// columns: D = A⁻¹M by a p×p Cholesky, W ← W − γD, and with U = A⁻¹G⁺
//   ∂L/∂B = γ(U Dᵀ + D Uᵀ)B,   ∂L/∂τ = γ⟨U, D⟩.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <Eigen/Cholesky>

#include "../autodiff/gemm.hpp"
#include "../autodiff/ops_elementwise.hpp"
#include "../autodiff/ops_linalg.hpp"
#include "../autodiff/ops_shape.hpp"
#include "../core/rng.hpp"
#include "adam.hpp"
#include "online_meta.hpp"

namespace scaltra {

/// The curvature SCALTRA learns for a block.
enum class Curvature {
    rank_one,    ///< b bᵀ + τI over the whole block, b of the block's size
    per_matrix,  ///< for a p×q weight matrix: B Bᵀ + τI_p over its columns, B p×q
                 ///< (the author's variant; vectors such as biases keep rank one)
};

/// How SCALTRA's smoothing step γ decreases after each move.
enum class GammaRule {
    sca,        ///< γ ← γ(1 − εγ)
    geometric,  ///< γ ← δγ
};

template <Real S, class MetaOptions = AdamOptions<S>>
struct ScaltraOptions {
    S alpha0 = S(0.5);  ///< initial learning rate: τ₀ = γ₀/α₀
    S beta = S(0.9);    ///< momentum
    S gamma0 = S(1);
    GammaRule gamma_rule = GammaRule::sca;
    S epsilon = S(1e-4);     ///< ε of the SCA rule
    S gamma_decay = S(0.9);  ///< δ of the geometric rule
    S b_scale = S(1e-3);     ///< b starts N(0, b_scale²) per element
    std::uint64_t seed = 0;  ///< of b's initial draw
    S tau_min = S(1e-6);     ///< τ = softplus(ρ) + τ_min > 0 whatever ρ
    Curvature curvature = Curvature::rank_one;
    MetaOptions meta = {.lr = S(1e-3)};
    Hypergradient hypergradient = Hypergradient::closed_form;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        using detail::Bound;
        detail::require_positive("alpha0", alpha0);
        detail::require_in("beta", beta, S(0), Bound::closed, S(1), Bound::open);
        detail::require_positive("gamma0", gamma0);
        detail::require_nonnegative("epsilon", epsilon);
        if (gamma_rule == GammaRule::sca && !(epsilon * gamma0 < S(1)))
            throw InvalidArgument(detail::concat(
                "Invalid epsilon: the SCA rule needs ε·γ₀ < 1, got ", epsilon, "·", gamma0));
        detail::require_in("gamma_decay", gamma_decay, S(0), Bound::open, S(1), Bound::closed);
        detail::require_nonnegative("b_scale", b_scale);
        detail::require_positive("tau_min", tau_min);
        if (!(gamma0 / alpha0 > tau_min))
            throw InvalidArgument(detail::concat("Invalid alpha0: τ₀ = γ₀/α₀ = ", gamma0 / alpha0,
                                                 " must exceed tau_min = ", tau_min));
        meta.validate();
    }
};

template <Real S>
struct ScaltraState {
    std::int64_t step = 0;       ///< moves made
    std::int64_t curvature = 0;  ///< the Curvature φ is laid out for
    S gamma = S(0);              ///< γ of the last move (of the next, before any)
    Vec<S> phi;                  ///< per block: b (or B), then ρ
    Vec<S> m;                    ///< momentum

    static constexpr std::array field_names{"step", "curvature", "gamma", "phi", "m"};
    auto fields() { return std::tie(step, curvature, gamma, phi, m); }
    auto fields() const { return std::tie(step, curvature, gamma, phi, m); }

    void validate() const {
        detail::require_step_count(step);
        detail::require_state(gamma > S(0), "gamma", "must be positive");
    }
};

namespace detail {

/// softplus(ρ) = log(1 + eʳ), stable for large |ρ|, its derivative and its inverse.
template <class S>
S softplus(S rho) {
    return std::max(rho, S(0)) + std::log1p(std::exp(-std::abs(rho)));
}
/// softplus′(ρ) = sigmoid(ρ) = dτ/dρ.
template <class S>
S sigmoid(S rho) {
    return S(1) / (S(1) + std::exp(-rho));
}
template <class S>
S softplus_inverse(S y) {
    return y > S(30) ? y : std::log(std::expm1(y));
}

/// The SCALTRA update rule, for OnlineMeta.
template <Real S, class MetaOptions>
class ScaltraRule {
public:
    using Scalar = S;
    using State = ScaltraState<S>;
    using Options = ScaltraOptions<S, MetaOptions>;
    static constexpr std::string_view kName = "SCALTRA";

    ScaltraRule(const Layout& layout, const Options& options) : layout_(layout), options_(options) {
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            if (is_matrix(l)) {
                meta_layout_.add(concat("B:", block.name), block.rows, block.cols);
                scratch_.emplace_back(block.rows, block.cols);
            } else {
                meta_layout_.add(concat("b:", block.name), block.size());
            }
            meta_layout_.add(concat("rho:", block.name), 1);
        }
    }

    /// Block l learns a p×q matrix B (Curvature::per_matrix, W not a vector).
    bool is_matrix(std::size_t l) const {
        return options_.curvature == Curvature::per_matrix && layout_[l].rows > 1
               && layout_[l].cols > 1;
    }

    const Layout& meta_layout() const { return meta_layout_; }

    State initial_state() const {
        Rng rng(options_.seed);
        State state{0, static_cast<std::int64_t>(options_.curvature), options_.gamma0,
                    Vec<S>(meta_layout_.size()), Vec<S>::Zero(layout_.size())};
        const S rho0 = softplus_inverse(options_.gamma0 / options_.alpha0 - options_.tau_min);
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            auto b = b_of(state.phi, l);
            for (Index i = 0; i < b.size(); ++i)
                b[i] = static_cast<S>(rng.normal(0.0, static_cast<double>(options_.b_scale)));
            rho_of(state.phi, l) = rho0;
        }
        return state;
    }

    /// Rejects a loaded state made for the other curvature (same shapes, other meaning).
    void check_state(const State& state) const {
        require_state(state.curvature == static_cast<std::int64_t>(options_.curvature), "curvature",
                      "was saved for the other Curvature (rank_one / per_matrix)");
    }

    /// m ← βm + (1−β)g, and γ's decrease (not before the first move).
    void observe(State& state, const Eigen::Ref<const Vec<S>>& g) const {
        state.m = options_.beta * state.m + (S(1) - options_.beta) * g;
        if (state.step > 0)
            state.gamma = options_.gamma_rule == GammaRule::sca
                              ? state.gamma * (S(1) - options_.epsilon * state.gamma)
                              : options_.gamma_decay * state.gamma;
    }

    S tau(const State& state, std::size_t l) const {
        return softplus(rho_of(state.phi, l)) + options_.tau_min;
    }

    /// w ← w − γ (m − b s)/τ, s = bᵀm/(τ + ‖b‖²), per block: one pass for the
    /// dot products, one for the update.
    void move(const State& state, Eigen::Ref<Vec<S>> x) const {
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            if (is_matrix(l)) {
                solve_matrix(state, l);
                block_view(x, block) -= state.gamma * scratch(l).D;
                continue;
            }
            const auto b = b_of(state.phi, l);
            const auto m = state.m.segment(block.offset, block.size());
            S bm = S(0), bb = S(0);
            for_each_chunk(block.size(), [&](Index i, Index n) {
                const auto bs = b.segment(i, n);
                bm += bs.dot(m.segment(i, n));
                bb += bs.squaredNorm();
            });
            const S t = tau(state, l), s = bm / (t + bb), step = state.gamma / t;
            auto xl = x.segment(block.offset, block.size());
            for_each_chunk(block.size(), [&](Index i, Index n) {
                xl.segment(i, n) -= step * (m.segment(i, n) - s * b.segment(i, n));
            });
        }
    }

    /// h = J_Δᵀ g for the last move, from four dot products per block (one pass):
    /// with c = τ + ‖b‖², s = bᵀm/c = bᵀd, s_g = bᵀg/c = bᵀu,
    ///   ∂L/∂b = (γ/τ)(s g + s_g m − 2 s s_g b),
    ///   ∂L/∂τ = γ uᵀd = γ (gᵀm − s bᵀg − s_g bᵀm + s s_g ‖b‖²)/τ².
    void hypergradient(const State& state, const Eigen::Ref<const Vec<S>>& g,
                       Eigen::Ref<Vec<S>> h) const {
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            if (is_matrix(l)) {
                matrix_hypergradient(state, l, g, h);
                continue;
            }
            const auto b = b_of(state.phi, l);
            const auto m = state.m.segment(block.offset, block.size());
            const auto gl = g.segment(block.offset, block.size());
            S bm = S(0), bg = S(0), bb = S(0), gm = S(0);
            for_each_chunk(block.size(), [&](Index i, Index n) {
                const auto bs = b.segment(i, n), ms = m.segment(i, n), gs = gl.segment(i, n);
                bm += bs.dot(ms);
                bg += bs.dot(gs);
                bb += bs.squaredNorm();
                gm += gs.dot(ms);
            });
            const S t = tau(state, l), gamma = state.gamma;
            const S c = t + bb, s = bm / c, sg = bg / c;
            const S cg = gamma / t * s, cm = gamma / t * sg, cb = -S(2) * gamma / t * s * sg;
            auto hb = b_of(h, l);
            for_each_chunk(block.size(), [&](Index i, Index n) {
                hb.segment(i, n) =
                    cg * gl.segment(i, n) + cm * m.segment(i, n) + cb * b.segment(i, n);
            });
            const S dtau = gamma * (gm - s * bg - sg * bm + s * sg * bb) / (t * t);
            rho_of(h, l) = dtau * sigmoid(rho_of(state.phi, l));
        }
    }

    /// Δ = −γ (b bᵀ + τI)⁻¹ m per block, on the tape, blocks stacked into one column.
    ad::Var<S> record(ad::Tape<S>& tape, const State& state, S* h) const {
        const ad::Var<S> unit = tape.constant(one_), floor = tape.constant(tau_min_);
        ad::Var<S> delta;
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            const Block& bb = meta_layout_[2 * l];
            const Block& rb = meta_layout_[2 * l + 1];
            const ad::Var<S> rho =
                tape.leaf(state.phi.data() + rb.offset, 1, 1, h ? h + rb.offset : nullptr);
            const ad::Var<S> t = ad::softplus(rho) + floor;
            ad::Var<S> step;
            if (is_matrix(l)) {  // −γ (B Bᵀ + τI)⁻¹ M, flattened column-major as in w
                const ad::Var<S> B = tape.leaf(state.phi.data() + bb.offset, bb.rows, bb.cols,
                                               h ? h + bb.offset : nullptr);
                const ad::Var<S> M =
                    tape.leaf(state.m.data() + block.offset, block.rows, block.cols);
                const ad::Var<S> eye = tape.constant(Mat<S>::Identity(block.rows, block.rows));
                const ad::Var<S> A = ad::matmul(B, B, false, true) + ad::scale(eye, t);
                step = ad::reshape(ad::scale(ad::solve_spd(A, M), -state.gamma), block.size(), 1);
            } else {
                const ad::Var<S> b = tape.leaf(state.phi.data() + bb.offset, bb.size(), 1,
                                               h ? h + bb.offset : nullptr);
                const ad::Var<S> m = tape.leaf(state.m.data() + block.offset, block.size(), 1);
                const ad::Var<S> s = ad::div(ad::dot(b, m), t + ad::squared_norm(b));
                const ad::Var<S> d = ad::scale(m - ad::scale(b, s), ad::div(unit, t));
                step = ad::scale(d, -state.gamma);
            }
            delta = l == 0 ? step : ad::concat_rows(delta, step);
        }
        return delta;
    }

private:
    /// Per matrix block: A = B Bᵀ + τI, its Cholesky factor, A⁻¹, D = A⁻¹M, U = A⁻¹G
    /// and products, sized once. A⁻¹ is formed column by column (p vector solves)
    /// and applied by GEMM, because Eigen's triangular solve with a matrix
    /// right-hand side allocates its packing buffers on every call. The B, τ and M
    /// that A⁻¹ and D were made from are kept, so that the hypergradient of a move
    /// reuses them (when they are still bit-identical) instead of factoring again.
    struct MatrixScratch {
        MatrixScratch(Index p, Index q)
            : A(Mat<S>::Identity(p, p)),
              llt(A),
              inverse(p, p),
              D(p, q),
              U(p, q),
              C(p, p),
              P(p, q),
              B_used(p, q),
              M_used(p, q) {}  // llt of I: every member of the factor set before any copy
        Mat<S> A;
        Eigen::LLT<Mat<S>> llt;
        Mat<S> inverse, D, U, C, P;
        Mat<S> B_used, M_used;
        S tau_used = S(-1);                 // no τ is negative: nothing cached yet
        ad::detail::GemmWorkspace<S> gemm;  // products without per-call packing buffers
    };

    auto B_of(const Vec<S>& phi, std::size_t l) const {
        const Block& bb = meta_layout_[2 * l];
        return Eigen::Map<const Mat<S>>(phi.data() + bb.offset, bb.rows, bb.cols);
    }

    /// The workspace of matrix block l (the matrix blocks' workspaces, in order).
    MatrixScratch& scratch(std::size_t l) const {
        std::size_t k = 0;
        for (std::size_t i = 0; i < l; ++i)
            k += is_matrix(i);
        return scratch_[k];
    }

    /// Factors A = B Bᵀ + τI of block l, forms A⁻¹ and D = A⁻¹M in its scratch
    /// (unless they are there already for the same B, τ and M).
    void solve_matrix(const State& state, std::size_t l) const {
        MatrixScratch& w = scratch(l);
        const auto B = B_of(state.phi, l);
        const auto M = block_view(state.m, layout_[l]);
        const S t = tau(state, l);
        if (t == w.tau_used && B == w.B_used && M == w.M_used)
            return;
        w.B_used = B;
        w.M_used = M;
        w.tau_used = t;
        w.gemm.multiply(B, false, B, true, w.A, false);
        w.A.diagonal().array() += t;
        w.llt.compute(w.A);  // reads the lower triangle; A is positive definite (τ > 0)
        w.inverse.setIdentity();
        for (Index j = 0; j < w.inverse.cols(); ++j) {
            auto column = w.inverse.col(j);
            w.llt.solveInPlace(column);
        }
        w.gemm.multiply(w.inverse, false, M, false, w.D, false);
    }

    /// ∂L/∂B = γ(U Dᵀ + D Uᵀ)B and ∂L/∂ρ = γ⟨U, D⟩·sigmoid(ρ) for matrix block l.
    void matrix_hypergradient(const State& state, std::size_t l, const Eigen::Ref<const Vec<S>>& g,
                              Eigen::Ref<Vec<S>> h) const {
        MatrixScratch& w = scratch(l);
        const Block& block = layout_[l];
        solve_matrix(state, l);
        w.gemm.multiply(w.inverse, false, block_view(g, block), false, w.U, false);
        const auto B = B_of(state.phi, l);
        const Block& bb = meta_layout_[2 * l];
        Eigen::Map<Mat<S>> hB(h.data() + bb.offset, bb.rows, bb.cols);
        w.gemm.multiply(w.U, false, w.D, true, w.C, false);  // U Dᵀ, p×p
        w.A = w.C + w.C.transpose();                         // U Dᵀ + D Uᵀ (A is free now)
        w.gemm.multiply(w.A, false, B, false, w.P, false);
        hB = state.gamma * w.P;
        const S dtau = state.gamma * w.U.cwiseProduct(w.D).sum();
        rho_of(h, l) = dtau * sigmoid(rho_of(state.phi, l));
    }

    /// Block l's b (flat) and ρ inside φ or a vector laid out like it (h); Phi
    /// is taken by reference, so a view of an Eigen::Ref never outlives it.
    template <class Phi>
    auto b_of(Phi& phi, std::size_t l) const {
        return phi.segment(meta_layout_[2 * l].offset, meta_layout_[2 * l].size());
    }
    template <class Phi>
    decltype(auto) rho_of(Phi& phi, std::size_t l) const {
        return phi[meta_layout_[2 * l + 1].offset];
    }

    Layout layout_;
    Options options_;
    Layout meta_layout_;
    Mat<S> one_ = Mat<S>::Ones(1, 1), tau_min_ = Mat<S>::Constant(1, 1, options_.tau_min);
    mutable std::vector<MatrixScratch> scratch_;  // of the matrix blocks; workspace, not state
};

}  // namespace detail

/// SCALTRA as an Optimizer: `Scaltra<float> opt(model.layout(), {.alpha0 = 0.5f});`
template <Real S, GradientOptimizer MetaOpt = Adam<S>>
class Scaltra : public OnlineMeta<detail::ScaltraRule<S, typename MetaOpt::Options>, MetaOpt> {
    using Base = OnlineMeta<detail::ScaltraRule<S, typename MetaOpt::Options>, MetaOpt>;

public:
    using Base::Base;

    /// Block l's learned τ, ‖b‖ and effective step size γ/τ (of the last move).
    S tau(std::size_t l) const { return this->rule().tau(this->state(), l); }
    S b_norm(std::size_t l) const {
        const Block& b = this->rule().meta_layout()[2 * l];
        return this->state().phi.segment(b.offset, b.size()).norm();
    }
    S effective_step(std::size_t l) const { return this->state().gamma / tau(l); }

    /// Calls f(name, value) for every learned quantity: per block "tau:<block>",
    /// "b_norm:<block>" and "step:<block>" (γ/τ); what CsvLogger writes.
    template <class F>
    void for_each_learned(F&& f) const {
        const Layout& layout = this->layout();
        for (std::size_t l = 0; l < layout.num_blocks(); ++l) {
            const std::string& block = layout[l].name;
            f(detail::concat("tau:", block), static_cast<double>(tau(l)));
            f(detail::concat("b_norm:", block), static_cast<double>(b_norm(l)));
            f(detail::concat("step:", block), static_cast<double>(effective_step(l)));
        }
    }
};

}  // namespace scaltra
