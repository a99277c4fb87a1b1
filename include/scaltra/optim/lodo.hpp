// LODO: learning to optimize during optimization (the LODO paper; ALGORITHMS.md,
// "LODO"). The step is x ← x − G(θ) m with the momentum m ← βm + (1−β)g and an
// implicit inverse Hessian
//   G(θ) = α₀ Eᵀ AᵀA E,   A = L_N ⋯ L_1,   L_i(v) = blockdiag(W_i)ᵀ P_i v,
// symmetric positive semidefinite for every θ. E zero-pads v ∈ ℝⁿ to width
// h = 2n + k − (2n mod k); each P_i is a fixed permutation, drawn once from the
// seed (or, an option, the stages of a butterfly with locality) or set by the
// user (state.perms), each W_i holds h/k learned k×k blocks.
// Every block starts as a random orthogonal matrix, so A is orthogonal and
// G(θ₀) = α₀I. θ is learned online by
// the meta-optimizer (online_meta.hpp) from the hypergradient of the last step.
// No n×n matrix is ever formed: the closed form (permuted_block_stack.hpp) runs
// the layers as passes over their blocks, the tape records the same layers with
// its permutation and block-diagonal ops, and the tests hold the two equal.
// The paper's ablations: LodoForm::diagonal, G = α₀ diag(θ), LodoForm::global,
// G = α₀θI (both from θ = 1), and depth 0 (layers = 0), G = α₀I: momentum SGD.
//
// θ is stored as the meta-optimizer stores its moments: Lodo<float, Adam<float,
// bfloat16>> (CompactLodo<float>) keeps θ, m_θ and v_θ in bfloat16, half the
// bytes of the passes over them, which are most of a step's memory traffic. The
// initial blocks are then the nearest bfloat16 values of the orthogonal ones,
// and every meta-step rounds stochastically (core/bfloat16.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../autodiff/ops_elementwise.hpp"
#include "../autodiff/ops_linalg.hpp"
#include "../autodiff/ops_shape.hpp"
#include "../core/random_orthogonal.hpp"
#include "../core/rng.hpp"
#include "adam.hpp"
#include "online_meta.hpp"
#include "permuted_block_stack.hpp"

namespace scaltra {

/// LODO's permutations P_i (of the full form).
enum class LodoPermutations {
    random,     ///< drawn uniformly from the seed (the paper's)
    butterfly,  ///< layer i is stage i mod D of the radix-k butterfly (D = ⌈log_k(h/k)⌉):
                ///< a pass streams through memory instead of jumping
};

/// The structure of LODO's G(θ).
enum class LodoForm {
    full,      ///< α₀ EᵀAᵀA E, A of N permuted block-diagonal layers
    diagonal,  ///< α₀ diag(θ), θ ∈ ℝⁿ
    global,    ///< α₀θI, θ a scalar
};

template <Real S, class MetaOptions = AdamOptions<S>>
struct LodoOptions {
    S alpha0 = S(1);         ///< G(θ₀) = α₀I
    Index layers = 16;       ///< N; 0 is momentum SGD (no meta-parameters)
    Index block = 4;         ///< k
    S beta = S(0.9);         ///< momentum
    std::uint64_t seed = 0;  ///< of the permutations and the initial blocks
    LodoForm form = LodoForm::full;
    LodoPermutations permutations = LodoPermutations::random;
    MetaOptions meta = {.lr = S(1e-3)};
    Hypergradient hypergradient = Hypergradient::closed_form;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        detail::require_positive("alpha0", alpha0);
        detail::require_nonnegative("layers", layers);
        detail::require_in("block", block, Index(1), detail::Bound::closed,
                           Index(detail::kMaxLodoBlock), detail::Bound::closed);
        detail::require_in("beta", beta, S(0), detail::Bound::closed, S(1), detail::Bound::open);
        meta.validate();
    }
};

/// LODO's state; θ stored as T (S, or bfloat16).
template <Real S, StorageOf<S> T = S>
struct LodoState {
    std::int64_t step = 0;  ///< moves made
    Vec<T> phi;             ///< θ: W_1 … W_N, each k×h (full), or the diagonal, or a scalar
    Vec<S> m;               ///< momentum
    /// P_1 … P_N, column i layer i's permutation of 0..h−1 as row picks:
    /// (P_i v)[t] = v[perms(t, i)]. h×N (0×0 without layers).
    IndexMat perms;

    static constexpr std::array field_names{"step", "phi", "m", "perms"};
    auto fields() { return std::tie(step, phi, m, perms); }
    auto fields() const { return std::tie(step, phi, m, perms); }

    void validate() const { detail::require_step_count(step); }
};

namespace detail {

/// The LODO update rule, for OnlineMeta; θ stored as T.
template <Real S, class MetaOptions, StorageOf<S> T = S>
class LodoRule {
public:
    using Scalar = S;
    using State = LodoState<S, T>;
    using Options = LodoOptions<S, MetaOptions>;
    static constexpr std::string_view kName = "LODO";
    static constexpr bool kFusedStep = true;  // fused_apply, below

    LodoRule(const Layout& layout, const Options& options)
        : n_(layout.size()),
          k_(options.block),
          h_(hidden_width(layout.size(), options.block)),
          options_(options),
          stack_(n_, k_, h_, options.form == LodoForm::full ? options.layers : 0,
                 [&, rng = Rng::stream(options.seed, 1)](Index i) mutable {
                     return options.permutations == LodoPermutations::butterfly
                                ? butterfly_permutation(h_, k_, i % butterfly_depth(h_, k_))
                                : rng.permutation(h_);
                 }),
          seed_perms_(stack_.permutations()),
          move_(n_) {
        if (options_.form != LodoForm::full) {
            meta_layout_.add("theta", options_.form == LodoForm::diagonal ? n_ : 1);
            return;
        }
        for (Index i = 0; i < options_.layers; ++i)
            meta_layout_.add(concat("W", i + 1), k_, h_);
    }

    /// h = 2n + k − (2n mod k): at least 2n, a multiple of k.
    static Index hidden_width(Index n, Index k) { return 2 * n + k - (2 * n) % k; }
    Index hidden_width() const { return h_; }

    const Layout& meta_layout() const { return meta_layout_; }

    /// θ₀: every k×k block Haar-random orthogonal (or θ = 1), so G(θ₀) = α₀I.
    State initial_state() const {
        State state{0, Vec<T>::Ones(meta_layout_.size()), Vec<S>::Zero(n_), seed_perms_};
        if (options_.form != LodoForm::full)
            return state;
        Rng rng = Rng::stream(options_.seed, 2);
        for (Index i = 0; i < options_.layers; ++i) {
            auto W = block_view(state.phi, meta_layout_[static_cast<std::size_t>(i)]);
            for (Index j = 0; j < h_; j += k_)
                W.middleCols(j, k_) = random_orthogonal(rng, k_).template cast<T>();
        }
        return state;
    }

    /// Rejects a state whose perms are not permutations of 0..h−1 (their shape
    /// is checked with every field's).
    void check_state(const State& state) const {
        std::vector<bool> seen(static_cast<std::size_t>(state.perms.rows()));
        for (Index i = 0; i < state.perms.cols(); ++i) {
            std::fill(seen.begin(), seen.end(), false);
            for (Index t = 0; t < state.perms.rows(); ++t) {
                const std::int32_t p = state.perms(t, i);
                if (p < 0 || p >= state.perms.rows() || seen[static_cast<std::size_t>(p)])
                    require_state(false, "perms",
                                  concat("column ", i, " is not a permutation of 0..",
                                         state.perms.rows() - 1));
                seen[static_cast<std::size_t>(p)] = true;
            }
        }
    }

    /// Makes the state's permutations the layers' (after a load, set_state or reset).
    void adopt(const State& state) {
        stack_.set_permutations(state.perms);
        tape_.padding.resize(0, 0);  // record() rebuilds its copies of the permutations
    }

    /// m ← βm + (1−β)g.
    void observe(State& state, const Eigen::Ref<const Vec<S>>&,
                 const Eigen::Ref<const Vec<S>>& g) const {
        state.m = options_.beta * state.m + (S(1) - options_.beta) * g;
    }

    /// x ← x − G(θ) m. Throws NonFinite, x unchanged, if G(θ)m overflows: θ has
    /// diverged (lower meta.lr), and the optimizer wants reset() or a checkpoint.
    void move(const State& state, Eigen::Ref<Vec<S>> x) const {
        switch (options_.form) {
            case LodoForm::full:
                stack_.apply_gram(state.phi.data(), state.m.data(), move_.data());
                break;
            case LodoForm::diagonal:
                move_ = state.phi.template cast<S>().cwiseProduct(state.m);
                break;
            case LodoForm::global:
                move_ = static_cast<S>(state.phi(0)) * state.m;
                break;
        }
        move_ *= options_.alpha0;
        if (!all_finite(move_))
            throw NonFinite(concat(kName,
                                   ": the move G(θ)m is not finite: the meta-parameters "
                                   "have diverged (lower meta.lr); x is unchanged"));
        x -= move_;
    }

    /// h = J_Δᵀ g = −α₀ ∂⟨g, G(θ) m⟩/∂θ, by the passes of permuted_block_stack.hpp (1).
    void hypergradient(const State& state, const Eigen::Ref<const Vec<S>>& g,
                       Eigen::Ref<Vec<S>> h) const {
        switch (options_.form) {
            case LodoForm::full:
                stack_.forward_pair(state.phi.data(), state.m.data(), g.data(), -options_.alpha0);
                stack_.backward_pair(
                    state.phi.data(), -options_.alpha0,
                    [&](Index at, const auto& piece) { h.segment(at, piece.size()) = piece; });
                break;
            case LodoForm::diagonal:
                h = -options_.alpha0 * state.m.cwiseProduct(g);
                break;
            case LodoForm::global:
                h(0) = -options_.alpha0 * state.m.dot(g);
                break;
        }
    }

    /// Hypergradient, meta-step and the move's momentum in two passes over the
    /// layers instead of three: the backward pass hands each chunk of h to the
    /// meta-optimizer's apply_piece as soon as it is formed (each block is read
    /// before it changes). The same expressions as the separate steps, so the
    /// result is theirs up to the approximate vectorised square root (as for
    /// SCALTRA). Returns false, having changed nothing, before the first move, for
    /// the ablations, or where the forward pass cannot prove h finite.
    template <class MetaOpt>
    bool fused_apply(State& state, MetaOpt& meta, Eigen::Ref<Vec<S>> x,
                     const Eigen::Ref<const Vec<S>>& g) const {
        if constexpr (!requires { meta.begin_step(); }) {
            return false;
        } else {
            if (state.step == 0 || options_.form != LodoForm::full || options_.layers == 0)
                return false;
            const double log_bound =
                stack_.forward_pair(state.phi.data(), state.m.data(), g.data(), -options_.alpha0);
            if (!(log_bound < std::log2(static_cast<double>(std::numeric_limits<S>::max())) - 2))
                return false;
            const auto constants = meta.begin_step();
            stack_.backward_pair(
                state.phi.data(), -options_.alpha0, [&](Index at, const auto& piece) {
                    meta.apply_piece(constants, at, state.phi.segment(at, piece.size()).array(),
                                     piece.array());
                });
            observe(state, x, g);
            move(state, x);
            return true;
        }
    }

    /// Δ = −G(θ) m on the tape. Full: A applies L_1 … L_N, Aᵀ undoes them in
    /// reverse (L_iᵀ u = P_iᵀ blockdiag(W_i) u).
    ad::Var<S> record(ad::Tape<S>& tape, const State& state, S* h) const {
        const S* phi = nullptr;
        if constexpr (std::is_same_v<T, S>) {
            phi = state.phi.data();
        } else {  // the tape's leaves are S: θ widened
            tape_.phi = state.phi.template cast<S>();
            phi = tape_.phi.data();
        }
        if (options_.form != LodoForm::full) {  // −α₀ θ ⊙ m, or −α₀θ m
            const ad::Var<S> theta = tape.leaf(phi, meta_layout_.size(), 1, h);
            const ad::Var<S> m = tape.leaf(state.m.data(), n_, 1);
            return ad::scale(
                options_.form == LodoForm::diagonal ? ad::mul(theta, m) : ad::scale(m, theta),
                -options_.alpha0);
        }
        TapeScratch& t = tape_scratch();
        ad::Var<S> u = ad::concat_rows(tape.leaf(state.m.data(), n_, 1), tape.constant(t.padding));
        t.layers.clear();
        for (Index i = 0; i < options_.layers; ++i) {
            const Block& b = meta_layout_[static_cast<std::size_t>(i)];
            t.layers.push_back(tape.leaf(phi + b.offset, k_, h_, h ? h + b.offset : nullptr));
            u = ad::block_diag_mul(t.layers.back(),
                                   ad::gather_rows(u, t.perms[static_cast<std::size_t>(i)]), true);
        }
        for (Index i = options_.layers - 1; i >= 0; --i) {
            const auto at = static_cast<std::size_t>(i);
            u = ad::gather_rows(ad::block_diag_mul(t.layers[at], u, false), t.inverses[at]);
        }
        return ad::scale(ad::slice(u, 0, 0, n_, 1), -options_.alpha0);
    }

private:
    /// What record() needs beyond the closed form, made on its first call (only
    /// tape users pay for it): P_i and P_iᵀ as row picks, E's zeros, the leaves,
    /// and a compact θ widened.
    struct TapeScratch {
        std::vector<std::vector<Index>> perms, inverses;
        Mat<S> padding;
        std::vector<ad::Var<S>> layers;
        Vec<S> phi;
    };
    TapeScratch& tape_scratch() const {
        if (tape_.padding.size() == 0) {
            tape_.padding = Mat<S>::Zero(h_ - n_, 1);
            tape_.perms.clear();
            tape_.inverses.clear();
            for (Index i = 0; i < options_.layers; ++i) {
                tape_.perms.push_back(stack_.permutation(i));
                std::vector<Index>& inverse =
                    tape_.inverses.emplace_back(tape_.perms.back().size());
                for (std::size_t t = 0; t < inverse.size(); ++t)
                    inverse[static_cast<std::size_t>(tape_.perms.back()[t])] =
                        static_cast<Index>(t);
            }
        }
        return tape_;
    }

    Index n_, k_, h_;
    Options options_;
    Layout meta_layout_;
    PermutedBlockStack<S, T> stack_;
    IndexMat seed_perms_;  // the seed's permutations: the initial state's, whatever was set since
    mutable Vec<S> move_;  // G(θ)m, checked before x moves
    mutable TapeScratch tape_;
};

}  // namespace detail

/// LODO as an Optimizer: `Lodo<float> opt(model.layout(), {.alpha0 = 1});`. θ is
/// stored as MetaOpt stores its state (stored_scalar_t).
template <Real S, GradientOptimizer MetaOpt = Adam<S>>
class Lodo
    : public OnlineMeta<detail::LodoRule<S, typename MetaOpt::Options, stored_scalar_t<MetaOpt>>,
                        MetaOpt> {
    using Base =
        OnlineMeta<detail::LodoRule<S, typename MetaOpt::Options, stored_scalar_t<MetaOpt>>,
                   MetaOpt>;

public:
    using Base::Base;
};

/// LODO with its meta-state (θ and Adam's moments of it) in bfloat16: half the
/// memory traffic of the default's largest arrays (the top of the file).
template <Real S>
using CompactLodo = Lodo<S, Adam<S, bfloat16>>;

SCALTRA_INSTANCE(class OnlineMeta<detail::LodoRule<float, AdamOptions<float>>, Adam<float>>)
SCALTRA_INSTANCE(class OnlineMeta<detail::LodoRule<double, AdamOptions<double>>, Adam<double>>)
SCALTRA_INSTANCE(
    class OnlineMeta<detail::LodoRule<float, AdamOptions<float>, bfloat16>, Adam<float, bfloat16>>)

}  // namespace scaltra
