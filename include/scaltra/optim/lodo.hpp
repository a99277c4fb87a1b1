// LODO: learning to optimize during optimization (the LODO paper; ALGORITHMS.md,
// "LODO"). The step is x ← x − G(θ) m with the momentum m ← βm + (1−β)g and an
// implicit inverse Hessian
//   G(θ) = α₀ Eᵀ AᵀA E,   A = L_N ⋯ L_1,   L_i(v) = blockdiag(W_i)ᵀ P_i v,
// symmetric positive semidefinite for every θ. E zero-pads v ∈ ℝⁿ to width
// h = 2n + k − (2n mod k); each P_i is a fixed permutation drawn once from the
// seed, each W_i holds h/k learned k×k blocks. Every block starts as a random
// orthogonal matrix, so A is orthogonal and G(θ₀) = α₀I. θ is learned online by
// the meta-optimizer (online_meta.hpp) from the hypergradient of the last step,
// taken on the autodiff tape; no n×n matrix is ever formed. The paper's
// ablations are LodoForm::diagonal, G = α₀ diag(θ), and LodoForm::global,
// G = α₀θI, both starting at θ = 1.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <tuple>
#include <vector>

#include "../autodiff/ops_elementwise.hpp"
#include "../autodiff/ops_linalg.hpp"
#include "../autodiff/ops_shape.hpp"
#include "../core/random_orthogonal.hpp"
#include "../core/rng.hpp"
#include "adam.hpp"
#include "online_meta.hpp"

namespace scaltra {

/// The structure of LODO's G(θ).
enum class LodoForm {
    full,      ///< α₀ EᵀAᵀA E, A of N permuted block-diagonal layers
    diagonal,  ///< α₀ diag(θ), θ ∈ ℝⁿ
    global,    ///< α₀θI, θ a scalar
};

template <Real S, class MetaOptions = AdamOptions<S>>
struct LodoOptions {
    S alpha0 = S(1);         ///< G(θ₀) = α₀I
    Index layers = 16;       ///< N
    Index block = 4;         ///< k
    S beta = S(0.9);         ///< momentum
    std::uint64_t seed = 0;  ///< of the permutations and the initial blocks
    LodoForm form = LodoForm::full;
    MetaOptions meta = {.lr = S(1e-3)};
    Hypergradient hypergradient = Hypergradient::tape;  ///< LODO's is always the tape's
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        detail::require_positive("alpha0", alpha0);
        detail::require_positive("layers", layers);
        detail::require_positive("block", block);
        detail::require_in("beta", beta, S(0), detail::Bound::closed, S(1), detail::Bound::open);
        meta.validate();
    }
};

template <Real S>
struct LodoState {
    std::int64_t step = 0;  ///< moves made
    std::int64_t seed = 0;  ///< the permutations' seed: a state fits only the same ones
    Vec<S> phi;             ///< θ: W_1 … W_N, each k×h (full), or the diagonal, or a scalar
    Vec<S> m;               ///< momentum

    static constexpr std::array field_names{"step", "seed", "phi", "m"};
    auto fields() { return std::tie(step, seed, phi, m); }
    auto fields() const { return std::tie(step, seed, phi, m); }

    void validate() const { detail::require_step_count(step); }
};

namespace detail {

/// The LODO update rule, for OnlineMeta.
template <Real S, class MetaOptions>
class LodoRule {
public:
    using Scalar = S;
    using State = LodoState<S>;
    using Options = LodoOptions<S, MetaOptions>;
    static constexpr std::string_view kName = "LODO";

    LodoRule(const Layout& layout, const Options& options)
        : n_(layout.size()),
          k_(options.block),
          h_(hidden_width(layout.size(), options.block)),
          options_(options),
          padding_(Mat<S>::Zero(h_ - n_, 1)) {
        if (options_.form != LodoForm::full) {
            meta_layout_.add("theta", options_.form == LodoForm::diagonal ? n_ : 1);
            return;
        }
        Rng rng = Rng::stream(options_.seed, 1);
        for (Index i = 0; i < options_.layers; ++i) {
            meta_layout_.add(concat("W", i + 1), k_, h_);
            permutations_.push_back(rng.permutation(h_));
            std::vector<Index> inverse(static_cast<std::size_t>(h_));
            for (Index j = 0; j < h_; ++j)
                inverse[static_cast<std::size_t>(
                    permutations_.back()[static_cast<std::size_t>(j)])] = j;
            inverses_.push_back(std::move(inverse));
        }
    }

    /// h = 2n + k − (2n mod k): at least 2n, a multiple of k.
    static Index hidden_width(Index n, Index k) { return 2 * n + k - (2 * n) % k; }
    Index hidden_width() const { return h_; }

    const Layout& meta_layout() const { return meta_layout_; }

    /// θ₀: every k×k block Haar-random orthogonal (or θ = 1), so G(θ₀) = α₀I.
    State initial_state() const {
        State state{0, static_cast<std::int64_t>(options_.seed), Vec<S>::Ones(meta_layout_.size()),
                    Vec<S>::Zero(n_)};
        if (options_.form != LodoForm::full)
            return state;
        Rng rng = Rng::stream(options_.seed, 2);
        for (Index i = 0; i < options_.layers; ++i) {
            auto W = block_view(state.phi, meta_layout_[static_cast<std::size_t>(i)]);
            for (Index j = 0; j < h_; j += k_)
                W.middleCols(j, k_) = random_orthogonal(rng, k_).template cast<S>();
        }
        return state;
    }

    /// Rejects a loaded state made with other permutations (same shapes, other meaning).
    void check_state(const State& state) const {
        require_state(state.seed == static_cast<std::int64_t>(options_.seed), "seed",
                      "was saved for other permutations (another seed)");
    }

    /// m ← βm + (1−β)g.
    void observe(State& state, const Eigen::Ref<const Vec<S>>&,
                 const Eigen::Ref<const Vec<S>>& g) const {
        state.m = options_.beta * state.m + (S(1) - options_.beta) * g;
    }

    /// Δ = −G(θ) m on the tape. Full: A applies L_1 … L_N, Aᵀ undoes them in
    /// reverse (L_iᵀ u = P_iᵀ blockdiag(W_i) u).
    ad::Var<S> record(ad::Tape<S>& tape, const State& state, S* h) const {
        if (options_.form != LodoForm::full) {  // −α₀ θ ⊙ m, or −α₀θ m
            const ad::Var<S> theta = tape.leaf(state.phi.data(), meta_layout_.size(), 1, h);
            const ad::Var<S> m = tape.leaf(state.m.data(), n_, 1);
            return ad::scale(
                options_.form == LodoForm::diagonal ? ad::mul(theta, m) : ad::scale(m, theta),
                -options_.alpha0);
        }
        ad::Var<S> u = ad::concat_rows(tape.leaf(state.m.data(), n_, 1), tape.constant(padding_));
        std::vector<ad::Var<S>>& W = layers_;
        W.clear();
        for (Index i = 0; i < options_.layers; ++i) {
            const Block& b = meta_layout_[static_cast<std::size_t>(i)];
            W.push_back(tape.leaf(state.phi.data() + b.offset, k_, h_, h ? h + b.offset : nullptr));
            u = ad::block_diag_mul(
                W.back(), ad::gather_rows(u, permutations_[static_cast<std::size_t>(i)]), true);
        }
        for (Index i = options_.layers - 1; i >= 0; --i)
            u = ad::gather_rows(ad::block_diag_mul(W[static_cast<std::size_t>(i)], u, false),
                                inverses_[static_cast<std::size_t>(i)]);
        return ad::scale(ad::slice(u, 0, 0, n_, 1), -options_.alpha0);
    }

private:
    Index n_, k_, h_;
    Options options_;
    Layout meta_layout_;
    std::vector<std::vector<Index>> permutations_, inverses_;  // P_i as row picks, and P_iᵀ
    Mat<S> padding_;                                           // E's zeros
    mutable std::vector<ad::Var<S>> layers_;                   // record()'s W_i, reused
};

}  // namespace detail

/// LODO as an Optimizer: `Lodo<float> opt(model.layout(), {.alpha0 = 1});`
template <Real S, GradientOptimizer MetaOpt = Adam<S>>
class Lodo : public OnlineMeta<detail::LodoRule<S, typename MetaOpt::Options>, MetaOpt> {
    using Base = OnlineMeta<detail::LodoRule<S, typename MetaOpt::Options>, MetaOpt>;

public:
    using Base::Base;
};

}  // namespace scaltra
