// SCALTRA: successive convex approximation with a learned per-layer curvature
// (the SCALTRA note; ALGORITHMS.md, "SCALTRA"). For every block of the Layout
// (a layer's weights, its bias) the surrogate
//   L(wₜ) + mᵀ(w − wₜ) + ½(w − wₜ)ᵀA(w − wₜ) + (λ₂/2)‖w‖² + λ₁‖w‖₁,   A = B Bᵀ + τI,
// with the momentum m in place of the gradient, is minimised and the step is
// smoothed by γₜ:
//   m ← βm + (1−β)g,   d = (A + λ₂I)⁻¹(m + λ₂wₜ),   ŵ = soft(wₜ − d, λ₁/(τ + λ₂)),
//   w ← wₜ + γₜ(ŵ − wₜ)
// (L2 exactly; L1 by the proximal step in the τ-metric, soft(z, κ) = sign(z)·max(|z| − κ, 0);
// without L1 the step is w ← wₜ − γₜd). B is n×r (rank r, default 1); at r = 1,
// Sherman–Morrison: d = (v − b (bᵀv)/(τ′ + ‖b‖²))/τ′ with v = m + λ₂wₜ, τ′ = τ + λ₂,
// in two passes and no matrix; at 1 < r < n by Woodbury, at r ≥ n by a dense
// Cholesky (low_rank_solver.hpp).
// B and τ = softplus(ρ) + τ_min are learned online by the meta-optimizer from the
// hypergradient of the last step (online_meta.hpp), in closed form, with u = A′⁻¹g⁺:
//   ∂L/∂B = γ(u dᵀ + d uᵀ)B,   ∂L/∂τ = γ uᵀd,   ∂L/∂ρ = ∂L/∂τ · sigmoid(ρ),
// g⁺ masked to where the soft threshold is not 0 when λ₁ > 0 (see hypergradient()).
// γ decreases by the SCA rule γₜ₊₁ = γₜ(1 − εγₜ) (Σγ = ∞, Σγ² < ∞), or
// geometrically γₜ₊₁ = δγₜ (the author's notebook: δ = 0.9, γ₀ = 0.9). τ₀ = γ₀/α₀,
// α₀ the note's initial learning rate; B starts small and random (at B = 0 its
// hypergradient is exactly 0, so it would never move).
//
// Curvature::per_matrix (the author's reference variant) learns, for a p×q weight
// matrix W, a B of W's shape and the curvature A = B Bᵀ + τI_p shared by W's
// columns: D = A⁻¹M (Woodbury when q < p, else a p×p Cholesky), W ← W − γD, and
// with U = A⁻¹G⁺:  ∂L/∂B = γ(U Dᵀ + D Uᵀ)B,   ∂L/∂τ = γ⟨U, D⟩.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "../autodiff/ops_elementwise.hpp"
#include "../autodiff/ops_linalg.hpp"
#include "../autodiff/ops_shape.hpp"
#include "../core/rng.hpp"
#include "adam.hpp"
#include "low_rank_solver.hpp"
#include "online_meta.hpp"

namespace scaltra {

/// The curvature SCALTRA learns for a block.
enum class Curvature {
    low_rank,    ///< B Bᵀ + τI over the whole block, B n×rank
    per_matrix,  ///< for a p×q weight matrix: B Bᵀ + τI_p over its columns, B p×q
                 ///< (the author's variant; vectors such as biases keep low_rank)
};

/// How SCALTRA's smoothing step γ decreases after each move.
enum class GammaRule {
    sca,        ///< γ ← γ(1 − εγ)
    geometric,  ///< γ ← δγ
};

template <Real S, class MetaOptions = AdamOptions<S>>
struct ScaltraOptions {
    S alpha0 = S(0.5);  ///< initial learning rate: τ₀ = γ₀/α₀ (the first step is γ₀/(τ₀ + λ₂))
    S beta = S(0.9);  ///< momentum
    S gamma0 = S(1);
    GammaRule gamma_rule = GammaRule::sca;
    S epsilon = S(1e-3);     ///< ε of the SCA rule (README, "SCALTRA": the sweep)
    S gamma_decay = S(0.9);  ///< δ of the geometric rule
    S b_scale = S(1e-3);     ///< B starts N(0, b_scale²) per element
    std::uint64_t seed = 0;  ///< of B's initial draw
    S tau_min = S(1e-6);     ///< τ = softplus(ρ) + τ_min > 0 whatever ρ
    Curvature curvature = Curvature::low_rank;
    Index rank = 1;  ///< r of the low-rank curvature (every block, biases under per_matrix too)
    S l2 = S(0);     ///< λ₂ of the penalty (λ₂/2)‖w‖², exactly inside the surrogate
    S l1 = S(0);     ///< λ₁ of the penalty λ₁‖w‖₁, by the proximal step
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
        if (!(gamma0 / alpha0 > tau_min) || !std::isfinite(gamma0 / alpha0))
            throw InvalidArgument(detail::concat("Invalid alpha0: τ₀ = γ₀/α₀ = ", gamma0 / alpha0,
                                                 " must be finite and exceed tau_min = ",
                                                 tau_min));
        if (rank < 1)
            throw InvalidArgument(detail::concat("Invalid rank: must be at least 1, got ", rank));
        detail::require_nonnegative("l2", l2);
        detail::require_nonnegative("l1", l1);
        meta.validate();
    }
};

template <Real S>
struct ScaltraState {
    std::int64_t step = 0;       ///< moves made
    std::int64_t curvature = 0;  ///< the Curvature φ is laid out for
    S gamma = S(0);              ///< γ of the last move (of the next, before any)
    Vec<S> phi;                  ///< per block: B, then ρ
    Vec<S> m;                    ///< momentum
    Vec<S> x_prev;  ///< where the last move started (kept only when λ₁ or λ₂ > 0)

    static constexpr std::array field_names{"step", "curvature", "gamma", "phi", "m", "x_prev"};
    auto fields() { return std::tie(step, curvature, gamma, phi, m, x_prev); }
    auto fields() const { return std::tie(step, curvature, gamma, phi, m, x_prev); }

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
    static constexpr bool kFusedStep = true;  // fused_apply, below

    ScaltraRule(const Layout& layout, const Options& options) : layout_(layout), options_(options) {
        Index largest = 0;
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            const bool matrix = is_matrix(l);
            // B is p×r and the right-hand side p×c: W's shape, or the block as a column.
            const Index p = matrix ? block.rows : block.size();
            const Index r = matrix ? block.cols : options_.rank;
            meta_layout_.add(concat(matrix ? "B:" : "b:", block.name), p, r);
            meta_layout_.add(concat("rho:", block.name), 1);
            if (!matrix && r == 1) {
                solve_of_.push_back({Path::rank_one, 0});
            } else if (!matrix && r < p) {
                solve_of_.push_back({Path::column, columns_.size()});
                columns_.emplace_back(r);
            } else {
                solve_of_.push_back({Path::general, solvers_.size()});
                solvers_.emplace_back(p, r, matrix ? block.cols : 1);
            }
            largest = std::max(largest, block.size());
        }
        fused_.resize(layout_.num_blocks());
        if (regularised())
            v_.resize(layout_.size());
        if (options_.l1 > S(0)) {
            d_.resize(layout_.size());
            g_active_.resize(layout_.size());
            ones_ = Vec<S>::Ones(largest);
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
        State state{0,
                    static_cast<std::int64_t>(options_.curvature),
                    options_.gamma0,
                    Vec<S>(meta_layout_.size()),
                    Vec<S>::Zero(layout_.size()),
                    regularised() ? Vec<S>::Zero(layout_.size()) : Vec<S>()};
        const S rho0 = softplus_inverse(options_.gamma0 / options_.alpha0 - options_.tau_min);
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            auto b = b_of(state.phi, l);
            for (Index i = 0; i < b.size(); ++i)
                b[i] = static_cast<S>(rng.normal(0.0, static_cast<double>(options_.b_scale)));
            rho_of(state.phi, l) = rho0;
        }
        return state;
    }

    /// Rejects a loaded state made for the other curvature (same shapes, other
    /// meaning), and a γ the SCA rule would turn negative (ε·γ ≥ 1: a state saved
    /// under another ε would then climb the loss).
    void check_state(const State& state) const {
        require_state(state.curvature == static_cast<std::int64_t>(options_.curvature), "curvature",
                      "was saved for the other Curvature (low_rank / per_matrix)");
        if (options_.gamma_rule == GammaRule::sca)
            require_state(options_.epsilon * state.gamma < S(1), "gamma",
                          concat("must satisfy ε·γ < 1 for the SCA rule, got ", options_.epsilon,
                                 "·", state.gamma));
    }

    /// m ← βm + (1−β)g, γ's decrease (not before the first move), and the point
    /// the move starts from when a penalty needs it.
    void observe(State& state, const Eigen::Ref<const Vec<S>>& x,
                 const Eigen::Ref<const Vec<S>>& g) const {
        state.m = options_.beta * state.m + (S(1) - options_.beta) * g;
        if (state.step > 0)
            state.gamma = next_gamma(state);
        if (regularised())
            state.x_prev = x;
    }

    /// The learned τ of block l; its solves use τ′ = τ + λ₂.
    S tau(const State& state, std::size_t l) const {
        return softplus(rho_of(state.phi, l)) + options_.tau_min;
    }
    S shifted_tau(const State& state, std::size_t l) const { return tau(state, l) + options_.l2; }

    /// x ← x − γd, d = A′⁻¹v, or with L1 x ← x + γ(soft(x − d, λ₁/τ′) − x).
    void move(const State& state, Eigen::Ref<Vec<S>> x) const {
        const Vec<S>& v = rhs(state);
        if (options_.l1 == S(0)) {
            for (std::size_t l = 0; l < layout_.num_blocks(); ++l)
                add_solve(state, l, v, -state.gamma, x);
            return;
        }
        solve_all(state, v);
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            const S kappa = options_.l1 / shifted_tau(state, l);
            const auto z = (state.x_prev - d_).segment(block.offset, block.size()).array();
            x.segment(block.offset, block.size()).array() +=
                state.gamma
                * (z.sign() * (z.abs() - kappa).max(S(0))
                   - state.x_prev.segment(block.offset, block.size()).array());
        }
    }

    /// h = J_Δᵀ g for the last move. Without L1, per block with Δ = −γ A′⁻¹v. With
    /// L1, Δ = γ(soft(z, κ) − x_prev), z = x_prev − d, κ = λ₁/τ′: where |z| > κ,
    /// Δ = −γ(d + κ sign(z)); elsewhere Δ = −γ x_prev, free of φ. So g is masked to
    /// the active set, and ∂κ/∂τ′ = −λ₁/τ′² adds γ(λ₁/τ′²) Σ_active g sign(z) to ∂L/∂τ.
    void hypergradient(const State& state, const Eigen::Ref<const Vec<S>>& g,
                       Eigen::Ref<Vec<S>> h) const {
        const Vec<S>& v = rhs(state);
        if (options_.l1 == S(0)) {
            for (std::size_t l = 0; l < layout_.num_blocks(); ++l)
                block_hypergradient(state, l, v, g, h);
            return;
        }
        solve_all(state, v);
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            const S t = shifted_tau(state, l), kappa = options_.l1 / t;
            S signed_sum = S(0);
            for (Index i = block.offset; i < block.offset + block.size(); ++i) {
                const S z = state.x_prev[i] - d_[i];
                const bool active = std::abs(z) > kappa;
                g_active_[i] = active ? g[i] : S(0);
                signed_sum += active ? (z > S(0) ? g[i] : -g[i]) : S(0);
            }
            block_hypergradient(state, l, v, g_active_, h);
            rho_of(h, l) +=
                state.gamma * options_.l1 / (t * t) * signed_sum * sigmoid(rho_of(state.phi, l));
        }
    }

    /// Steps 2–4 of the online loop (hypergradient, meta-step, momentum and γ,
    /// move) in three passes per block instead of about eight, when every block is
    /// rank one without penalties and the meta-optimizer steps piecewise (Adam):
    ///   A. the hypergradient's four dot products, and bounds proving h finite;
    ///   B. per chunk: h into a buffer, the meta-step on b, m ← βm + (1−β)g, and
    ///      the move's dot products of the new b and m;
    ///   C. the move.
    /// Same chunks of x, same expressions: m, γ and the meta-optimizer's moments
    /// are the separate steps', bit for bit; φ and x agree to rounding (Eigen's
    /// vectorised float square root is approximate, and the meta-step's pieces
    /// start elsewhere). Returns false, having changed nothing, before the first
    /// move, where it does not apply, or where h might not be finite (the
    /// separate steps then decide what to do).
    template <class MetaOpt>
    bool fused_apply(State& state, MetaOpt& meta, Eigen::Ref<Vec<S>> x,
                     const Eigen::Ref<const Vec<S>>& g) const {
        if constexpr (!requires { meta.begin_step(); }) {
            return false;
        } else {
            if (state.step == 0 || regularised() || !columns_.empty() || !solvers_.empty())
                return false;
            for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {  // A
                S bound;
                fused_[l] = rank_one_pass(state, l, state.m, g, &bound);
                if (!(bound < std::numeric_limits<S>::max() / S(4)))
                    return false;
            }
            const auto k = meta.begin_step();
            const S gamma = next_gamma(state);
            state.gamma = gamma;  // the moves below use the new γ, as after observe()
            std::array<S, kChunk> buffer;
            bool finite = true;
            for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
                const Block& block = layout_[l];
                RankOneCoefficients& c = fused_[l];
                const Index rho_at = meta_layout_[2 * l + 1].offset;
                Eigen::Array<S, 1, 1> h_rho;
                h_rho(0) = c.h_rho;
                meta.apply_piece(k, rho_at, state.phi.segment(rho_at, 1).array(), h_rho);
                const Index b_at = meta_layout_[2 * l].offset;
                auto m = state.m.segment(block.offset, block.size());
                const auto gl = g.segment(block.offset, block.size());
                S bm = S(0), bb = S(0), probe = S(0);
                for_each_chunk(block.size(), [&](Index i, Index n) {  // B
                    auto b = state.phi.segment(b_at + i, n);
                    Eigen::Map<Vec<S>> h(buffer.data(), n);
                    h = c.cg * gl.segment(i, n) + c.cv * m.segment(i, n) + c.cb * b;
                    meta.apply_piece(k, b_at + i, b.array(), h.array());
                    m.segment(i, n) =
                        options_.beta * m.segment(i, n) + (S(1) - options_.beta) * gl.segment(i, n);
                    bm += b.dot(m.segment(i, n));
                    bb += b.squaredNorm();
                    probe += (b.array() - b.array()).sum();  // NaN unless the new b is finite
                });
                const S t = shifted_tau(state, l);
                finite = finite && std::isfinite(probe) && std::isfinite(t);
                c.s = rank_one_s(bm, t, bb);  // the move's coefficients, kept for C
                c.step = -gamma / t;
            }
            if (!finite)  // before x moves
                throw meta_parameters_diverged(kName);
            for (std::size_t l = 0; l < layout_.num_blocks(); ++l)  // C
                add_rank_one(state, l, state.m, fused_[l].s, fused_[l].step, x);
            return true;
        }
    }

    /// Δ(φ) on the tape, blocks stacked into one column: −γ A′⁻¹v by the same
    /// formulas as the closed form (Sherman–Morrison, Woodbury or a dense solve),
    /// soft-thresholded with L1.
    ad::Var<S> record(ad::Tape<S>& tape, const State& state, S* h) const {
        const Vec<S>& v = rhs(state);
        const ad::Var<S> unit = tape.constant(one_), floor = tape.constant(tau_floor_);
        ad::Var<S> delta;
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
            const Block& block = layout_[l];
            const Block& bb = meta_layout_[2 * l];
            const Block& rb = meta_layout_[2 * l + 1];
            const ad::Var<S> rho =
                tape.leaf(state.phi.data() + rb.offset, 1, 1, h ? h + rb.offset : nullptr);
            const ad::Var<S> t = ad::softplus(rho) + floor;  // τ′ = τ + λ₂
            const ad::Var<S> B = tape.leaf(state.phi.data() + bb.offset, bb.rows, bb.cols,
                                           h ? h + bb.offset : nullptr);
            const Index p = bb.rows, r = bb.cols, c = is_matrix(l) ? block.cols : 1;
            const ad::Var<S> V = tape.leaf(v.data() + block.offset, p, c);
            ad::Var<S> d;
            if (r == 1 && c == 1) {  // Sherman–Morrison: (v − b s)/τ′, s = bᵀv/(τ′ + ‖b‖²)
                const ad::Var<S> s = ad::div(ad::dot(B, V), t + ad::squared_norm(B));
                d = ad::scale(V - ad::scale(B, s), ad::div(unit, t));
            } else if (r < p) {  // Woodbury: (V − B K⁻¹BᵀV)/τ′, K = τ′I_r + BᵀB
                const ad::Var<S> eye = tape.constant(Mat<S>::Identity(r, r));
                const ad::Var<S> K = ad::matmul(B, B, true, false) + ad::scale(eye, t);
                const ad::Var<S> Sv = ad::solve_spd(K, ad::matmul(B, V, true, false));
                d = ad::scale(V - ad::matmul(B, Sv), ad::div(unit, t));
            } else {  // (B Bᵀ + τ′I_p)⁻¹V
                const ad::Var<S> eye = tape.constant(Mat<S>::Identity(p, p));
                d = ad::solve_spd(ad::matmul(B, B, false, true) + ad::scale(eye, t), V);
            }
            d = ad::reshape(d, block.size(), 1);  // column-major, as the block in x
            ad::Var<S> step;
            // With L1: γ(soft(z, κ) − x_prev), soft(z, κ) = relu(z − κ) − relu(−z − κ).
            if (options_.l1 > S(0)) {
                const ad::Var<S> x_prev =
                    tape.leaf(state.x_prev.data() + block.offset, block.size(), 1);
                const ad::Var<S> kappa = ad::scale(tape.leaf(ones_.data(), block.size(), 1),
                                                   ad::div(tape.constant(l1_), t));
                const ad::Var<S> z = x_prev - d;
                const ad::Var<S> soft = ad::relu(z - kappa) - ad::relu(ad::scale(z, S(-1)) - kappa);
                step = ad::scale(soft - x_prev, state.gamma);
            } else {
                step = ad::scale(d, -state.gamma);
            }
            delta = l == 0 ? step : ad::concat_rows(delta, step);
        }
        return delta;
    }

private:
    /// How block l's solves run: rank one in two passes of its own; a block taken
    /// as one column at rank r < p by StreamingWoodbury; any other shape (per
    /// matrix, or r ≥ p) by LowRankSolver.
    enum class Path { rank_one, column, general };
    struct BlockSolve {
        Path path;
        std::size_t index;  // into columns_ or solvers_
    };

    bool regularised() const { return options_.l1 > S(0) || options_.l2 > S(0); }

    S next_gamma(const State& state) const {
        return options_.gamma_rule == GammaRule::sca
                   ? state.gamma * (S(1) - options_.epsilon * state.gamma)
                   : options_.gamma_decay * state.gamma;
    }

    /// A rank-one block's hypergradient: h_b = cg·g + cv·v + cb·b, and h_ρ.
    struct RankOneCoefficients {
        S cg, cv, cb, h_rho;             // of h (pass A)
        S s = S(0), step = S(0);         // of the move, from the new b (pass B, for C)
    };

    /// Block l's four dot products of the rank-one hypergradient in one pass, and
    /// the coefficients of h from them. With `bound` (pass A of fused_apply) the
    /// same pass also finds max|g|, max|v|, max|b| and stores the bound
    /// |h_b| ≤ |cg|·max|g| + |cv|·max|v| + |cb|·max|b| (+∞ if h_ρ is not finite).
    RankOneCoefficients rank_one_pass(const State& state, std::size_t l, const Vec<S>& v,
                                      const Eigen::Ref<const Vec<S>>& g, S* bound) const {
        const Block& block = layout_[l];
        const auto b = b_of(state.phi, l);
        const auto vl = v.segment(block.offset, block.size());
        const auto gl = g.segment(block.offset, block.size());
        S bv = S(0), bg = S(0), bb = S(0), gv = S(0), g_max = S(0), v_max = S(0), b_max = S(0);
        for_each_chunk(block.size(), [&](Index i, Index n) {
            // One declaration each: their types differ (b is a Vec, g a Ref), which
            // g++ 12 accepts in one `auto` declaration and the standard does not.
            const auto bs = b.segment(i, n);
            const auto vs = vl.segment(i, n);
            const auto gs = gl.segment(i, n);
            bv += bs.dot(vs);
            bg += bs.dot(gs);
            bb += bs.squaredNorm();
            gv += gs.dot(vs);
            if (bound) {
                g_max = std::max(g_max, gs.cwiseAbs().maxCoeff());
                v_max = std::max(v_max, vs.cwiseAbs().maxCoeff());
                b_max = std::max(b_max, bs.cwiseAbs().maxCoeff());
            }
        });
        const RankOneCoefficients c = rank_one_coefficients(state, l, bv, bg, bb, gv);
        if (bound)
            *bound = std::isfinite(c.h_rho)
                         ? std::abs(c.cg) * g_max + std::abs(c.cv) * v_max + std::abs(c.cb) * b_max
                         : std::numeric_limits<S>::infinity();
        return c;
    }

    /// From the four dot products (c = τ′ + ‖b‖², s = bᵀv/c = bᵀd, s_g = bᵀg/c = bᵀu):
    ///   ∂L/∂b = (γ/τ′)(s g + s_g v − 2 s s_g b),
    ///   ∂L/∂τ = γ uᵀd = γ (gᵀv − s bᵀg − s_g bᵀv + s s_g ‖b‖²)/τ′², ∂L/∂ρ = ∂L/∂τ·sigmoid(ρ).
    RankOneCoefficients rank_one_coefficients(const State& state, std::size_t l, S bv, S bg, S bb,
                                              S gv) const {
        const S t = shifted_tau(state, l), gamma = state.gamma,
                dtau_drho = sigmoid(rho_of(state.phi, l));
        const S c = t + bb, s = bv / c, sg = bg / c;
        if (!std::isfinite(s))  // the step was the isotropic v/τ′ (rank_one_s): b played no part
            return {S(0), S(0), S(0), gamma * gv / (t * t) * dtau_drho};
        const S dtau = gamma * (gv - s * bg - sg * bv + s * sg * bb) / (t * t);
        return {gamma / t * s, gamma / t * sg, -S(2) * gamma / t * s * sg,
                dtau * dtau_drho};  // dτ′/dρ = dτ/dρ
    }

    /// The right-hand side v = m + λ₂ x_prev (m itself without L2).
    const Vec<S>& rhs(const State& state) const {
        if (options_.l2 == S(0))
            return state.m;
        v_ = state.m + options_.l2 * state.x_prev;
        return v_;
    }

    /// target += α A′⁻¹v over block l: at rank one in two passes (the dot products,
    /// then the update), else by the block's StreamingWoodbury or LowRankSolver.
    void add_solve(const State& state, std::size_t l, const Vec<S>& v, S alpha,
                   Eigen::Ref<Vec<S>> target) const {
        const Block& block = layout_[l];
        const S t = shifted_tau(state, l);
        const BlockSolve how = solve_of_[l];
        if (how.path == Path::general) {
            const Mat<S>& D =
                solvers_[how.index].solve(B_of(state.phi, l), t, rhs_view(v.data(), l));
            rhs_view(target.data(), l) += alpha * D;
            return;
        }
        if (how.path == Path::column) {
            columns_[how.index].add_solve(B_of(state.phi, l), t,
                                          v.segment(block.offset, block.size()), alpha,
                                          target.segment(block.offset, block.size()));
            return;
        }
        const auto b = b_of(state.phi, l);
        const auto vl = v.segment(block.offset, block.size());
        S bv = S(0), bb = S(0);
        for_each_chunk(block.size(), [&](Index i, Index n) {
            const auto bs = b.segment(i, n);
            bv += bs.dot(vl.segment(i, n));
            bb += bs.squaredNorm();
        });
        add_rank_one(state, l, v, rank_one_s(bv, t, bb), alpha / t, target);
    }

    /// s = bᵀv/(τ′ + ‖b‖²), or 0 where that overflowed: the block then takes the
    /// isotropic step v/τ′ instead of NaN (and b gets no hypergradient).
    static S rank_one_s(S bv, S t, S bb) {
        const S s = bv / (t + bb);
        return std::isfinite(s) ? s : S(0);
    }

    /// The update pass of a rank-one solve: target += step·(v − s b) over block l.
    void add_rank_one(const State& state, std::size_t l, const Vec<S>& v, S s, S step,
                      Eigen::Ref<Vec<S>> target) const {
        const Block& block = layout_[l];
        const auto b = b_of(state.phi, l);
        const auto vl = v.segment(block.offset, block.size());
        auto tl = target.segment(block.offset, block.size());
        for_each_chunk(block.size(), [&](Index i, Index n) {
            tl.segment(i, n) += step * (vl.segment(i, n) - s * b.segment(i, n));
        });
    }

    /// d = A′⁻¹v over all blocks, into d_.
    void solve_all(const State& state, const Vec<S>& v) const {
        d_.setZero();
        for (std::size_t l = 0; l < layout_.num_blocks(); ++l)
            add_solve(state, l, v, S(1), d_);
    }

    /// Block l's part of J_Δᵀg for Δ = −γ A′⁻¹v: at rank one from four dot products
    /// (one pass, rank_one_pass), else by the block's StreamingWoodbury or LowRankSolver.
    void block_hypergradient(const State& state, std::size_t l, const Vec<S>& v,
                             const Eigen::Ref<const Vec<S>>& g, Eigen::Ref<Vec<S>> h) const {
        const Block& block = layout_[l];
        const BlockSolve how = solve_of_[l];
        if (how.path != Path::rank_one) {
            const Block& bb = meta_layout_[2 * l];
            Eigen::Map<Mat<S>> hB(h.data() + bb.offset, bb.rows, bb.cols);
            const S t = shifted_tau(state, l);
            const S dtau = how.path == Path::column
                               ? columns_[how.index].hypergradient(
                                   B_of(state.phi, l), t, v.segment(block.offset, block.size()),
                                   g.segment(block.offset, block.size()), state.gamma, hB)
                               : solvers_[how.index].hypergradient(
                                   B_of(state.phi, l), t, rhs_view(v.data(), l),
                                   rhs_view(g.data(), l), state.gamma, hB);
            rho_of(h, l) = dtau * sigmoid(rho_of(state.phi, l));  // dτ′/dρ = dτ/dρ
            return;
        }
        const RankOneCoefficients c = rank_one_pass(state, l, v, g, nullptr);
        const auto b = b_of(state.phi, l);
        const auto vl = v.segment(block.offset, block.size());
        const auto gl = g.segment(block.offset, block.size());
        auto hb = b_of(h, l);
        for_each_chunk(block.size(), [&](Index i, Index n) {
            hb.segment(i, n) =
                c.cg * gl.segment(i, n) + c.cv * vl.segment(i, n) + c.cb * b.segment(i, n);
        });
        rho_of(h, l) = c.h_rho;
    }

    /// Block l of a vector laid out like x as the p×c right-hand side of its
    /// solves: W's shape per matrix, else the block as a column.
    Eigen::Map<const Mat<S>> rhs_view(const S* x, std::size_t l) const {
        const Index p = meta_layout_[2 * l].rows;
        return {x + layout_[l].offset, p, layout_[l].size() / p};
    }
    Eigen::Map<Mat<S>> rhs_view(S* x, std::size_t l) const {
        const Index p = meta_layout_[2 * l].rows;
        return {x + layout_[l].offset, p, layout_[l].size() / p};
    }

    auto B_of(const Vec<S>& phi, std::size_t l) const {
        const Block& bb = meta_layout_[2 * l];
        return Eigen::Map<const Mat<S>>(phi.data() + bb.offset, bb.rows, bb.cols);
    }

    /// Block l's B (flat) and ρ inside φ or a vector laid out like it (h); Phi
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
    std::vector<BlockSolve> solve_of_;
    Mat<S> one_ = Mat<S>::Ones(1, 1),
           tau_floor_ = Mat<S>::Constant(1, 1, options_.tau_min + options_.l2),
           l1_ = Mat<S>::Constant(1, 1, options_.l1);
    Vec<S> ones_;  // a leaf of ones for κ on the tape (L1)
    // Workspace, not state: the solvers of the blocks that are not rank one, v = m + λ₂x_prev,
    // and with L1 d and the masked gradient.
    mutable std::vector<StreamingWoodbury<S>> columns_;
    mutable std::vector<LowRankSolver<S>> solvers_;
    mutable Vec<S> v_, d_, g_active_;
    mutable std::vector<RankOneCoefficients> fused_;  // fused_apply's pass A, per block
};

}  // namespace detail

/// SCALTRA as an Optimizer: `Scaltra<float> opt(model.layout(), {.alpha0 = 0.5f});`
template <Real S, GradientOptimizer MetaOpt = Adam<S>>
class Scaltra : public OnlineMeta<detail::ScaltraRule<S, typename MetaOpt::Options>, MetaOpt> {
    using Base = OnlineMeta<detail::ScaltraRule<S, typename MetaOpt::Options>, MetaOpt>;

public:
    using Base::Base;

    /// Block l's learned τ, ‖B‖ (Frobenius) and effective step size γ/(τ + λ₂), the
    /// step along directions B does not touch (of the last move). InvalidArgument
    /// for an l past the last block.
    S tau(std::size_t l) const {
        this->layout().require_index(l);
        return this->rule().tau(this->state(), l);
    }
    S b_norm(std::size_t l) const {
        this->layout().require_index(l);
        const Block& b = this->rule().meta_layout()[2 * l];
        return this->state().phi.segment(b.offset, b.size()).norm();
    }
    S effective_step(std::size_t l) const {
        this->layout().require_index(l);
        return this->state().gamma / this->rule().shifted_tau(this->state(), l);
    }

    /// Calls f(name, value) for every learned quantity: per block "tau:<block>",
    /// "b_norm:<block>" and "step:<block>" (γ/(τ + λ₂)); what CsvLogger writes.
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

SCALTRA_INSTANCE(class OnlineMeta<detail::ScaltraRule<float, AdamOptions<float>>, Adam<float>>)
SCALTRA_INSTANCE(class OnlineMeta<detail::ScaltraRule<double, AdamOptions<double>>, Adam<double>>)

}  // namespace scaltra
