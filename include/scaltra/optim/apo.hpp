// APO: amortized proximal optimization (Bae, Vicol, HaoChen & Grosse, "Amortized
// Proximal Optimization", NeurIPS 2022; ALGORITHMS.md, "APO"). The optimizer's own
// parameters φ are learned from the step it is about to take: every K steps, on
// the step's batch B, the meta-objective (Algorithm 1)
//   Q(φ) = J_B(u) + λ_FSD·mean_{x̃∈B′} ρ(f(x̃; u), f(x̃; w)) + (λ_WSD/2)‖u − w‖²,
//   u = w + Δ(φ),
// the loss after the step, kept close to w in function space (outputs on a
// second batch of inputs B′, held constant at w; from a ModelObjective) and in
// weight space, takes one meta-optimizer step; then the step is taken with the
// new φ. This is the look-ahead form of the shared loop (online_meta.hpp).
//
// Apo<S, Base> learns the learning rate of a base optimizer (SGD, with momentum
// or Nesterov, Adam, AdamW, RMSProp), whose step is w ← w − ηd with a direction d
// that does not depend on η: Δ = −ηd, η = η₀e^φ (η₀ the base's lr), and
//   ∂Q/∂φ = −η dᵀ∇_u Q(u),   ∇_u Q = ∇J_B(u) + λ_FSD ∇FSD(u) + λ_WSD(u − w)
// (research-apo-dco.md §3.4: no second derivatives). The base's state advances
// once per step, in the real step, through the base's own formula, so with a
// frozen φ the trajectory is the base optimizer's bit for bit.
//
// ApoP<S> learns a structured preconditioner (§3.5): for each weight matrix W
// (p×q, a block of the Layout with more than one row and column)
//   P = (A⊗B) diag(vec S)² (A⊗B)ᵀ,   Δ_W = −B (S⊙S⊙(Bᵀ V A)) Aᵀ,
// V the gradient (or the momentum b ← μb + g), PSD for every A (q×q), B (p×p),
// S (p×q), and P = η₀I at the start (A = I, B = I, S = √η₀); a factor larger than
// max_factor stays I (S still scales every weight). Every other block (a
// bias) learns a scalar learning rate η₀e^φ as Apo does. With K = BᵀVA, C = S²⊙K,
// E = ∇_u Q on W's block and F = S²⊙(BᵀEA), the meta-gradients are
//   ∂Q/∂B = −(E A Cᵀ + V A Fᵀ),   ∂Q/∂A = −(Eᵀ B C + Vᵀ B F),   ∂Q/∂S = −2 S⊙K⊙(BᵀEA).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <tuple>
#include <vector>

#include "../autodiff/ops_elementwise.hpp"
#include "../autodiff/ops_linalg.hpp"
#include "../autodiff/ops_shape.hpp"
#include "adam.hpp"
#include "online_meta.hpp"
#include "sgd.hpp"

namespace scaltra {

/// An optimizer whose step is x ← x − η·d, d a direction that does not depend on
/// the learning rate η, with its rule as functions of its state (Sgd, Adam,
/// AdamW, RmsProp): what Apo drives.
template <class O>
concept DirectionalOptimizer = GradientOptimizer<O> && requires(
    typename O::State& st, const typename O::State& cst, const typename O::Options& o,
    typename O::Scalar lr, Eigen::Ref<Vec<typename O::Scalar>>& x,
    const Eigen::Ref<const Vec<typename O::Scalar>>& cx,
    const Eigen::Ref<const Vec<typename O::Scalar>>& g, Eigen::Ref<Vec<typename O::Scalar>>& d,
    const Layout& layout) {
    { O::initial_state(layout, o) } -> std::same_as<typename O::State>;
    O::apply_at(st, o, lr, x, g);
    O::direction(cst, o, cx, g, d);
    { o.lr.is_constant() } -> std::same_as<bool>;
};

template <Real S, class BaseOptions, class MetaOptions = AdamOptions<S>>
struct ApoOptions {
    BaseOptions base = {};  ///< the base optimizer's; its lr, a number, is η₀
    Index interval = 10;    ///< K: a meta-step every K steps, the first at step 0
    S lambda_fsd = S(0);    ///< λ_FSD; > 0 needs a ModelObjective
    S lambda_wsd = S(10);   ///< λ_WSD (README, "APO": the sweep)
    Discrepancy rho = Discrepancy::kl_softmax;  ///< ρ of the function-space term
    MetaOptions meta = {.lr = S(0.03)};         ///< on φ = log(η/η₀)
    Hypergradient hypergradient = Hypergradient::closed_form;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const;
};

template <Real S, class MetaOptions = AdamOptions<S>>
struct ApoPOptions {
    S lr = S(0.03);       ///< η₀: P = η₀I at the start, and each other block's learning rate
    S momentum = S(0.9);  ///< μ: Δ = −P b with b ← μb + g (0: Δ = −P g)
    Index max_factor = 256;  ///< a factor A or B of more rows stays I, not learned (0: none)
    Index interval = 10;     ///< K: a meta-step every K steps, the first at step 0
    S lambda_fsd = S(0);     ///< λ_FSD; > 0 needs a ModelObjective
    S lambda_wsd = S(10);    ///< λ_WSD (README, "APO": the sweep)
    Discrepancy rho = Discrepancy::kl_softmax;  ///< ρ of the function-space term
    MetaOptions meta = {.lr = S(1e-4)};         ///< on A, B, S and the log learning rates
    Hypergradient hypergradient = Hypergradient::closed_form;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const;
};

template <Real S, class BaseState>
struct ApoState {
    std::int64_t step = 0;  ///< steps made
    Vec<S> phi;             ///< log(η/η₀)
    BaseState base;         ///< the base optimizer's state

    static constexpr std::array field_names{"step", "phi", "base"};
    auto fields() { return std::tie(step, phi, base); }
    auto fields() const { return std::tie(step, phi, base); }

    void validate() const { detail::require_step_count(step); }
};

template <Real S>
struct ApoPState {
    std::int64_t step = 0;   ///< steps made
    Vec<S> phi;              ///< per weight matrix A, B, S; per other block log(η/η₀)
    Vec<S> momentum_buffer;  ///< b (empty when momentum = 0)

    static constexpr std::array field_names{"step", "phi", "momentum_buffer"};
    auto fields() { return std::tie(step, phi, momentum_buffer); }
    auto fields() const { return std::tie(step, phi, momentum_buffer); }

    void validate() const { detail::require_step_count(step); }
};

namespace detail {

/// The options both APO variants share.
template <class S>
void validate_meta_step(Index interval, S lambda_fsd, S lambda_wsd) {
    if (interval < 1)
        throw InvalidArgument(concat("Invalid interval: must be at least 1, got ", interval));
    require_nonnegative("lambda_fsd", lambda_fsd);
    require_nonnegative("lambda_wsd", lambda_wsd);
}

/// APO's meta-objective Q at the look-ahead point u = w + Δ, and v = ∇_u Q.
/// J_B is f itself at u (f closes over the step's batch); the function-space term
/// comes from a ModelObjective's discrepancy.
template <Real S>
class MetaObjective {
public:
    explicit MetaObjective(Index n) : u_(Vec<S>::Zero(n)), fsd_(Vec<S>::Zero(n)) {}

    template <class F>
    S operator()(F& f, const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Vec<S>>& delta,
                 S lambda_fsd, S lambda_wsd, Discrepancy rho, Vec<S>& v) {
        if constexpr (!ModelObjective<F, S>)
            if (lambda_fsd > S(0))
                throw InvalidArgument(
                    "Invalid lambda_fsd: the function-space term (lambda_fsd > 0) needs a "
                    "ModelObjective, an objective with discrepancy(u, w, rho, grad)");
        u_ = w + delta;
        v.setZero();
        S q = static_cast<S>(f(u_, v));
        if constexpr (ModelObjective<F, S>) {
            if (lambda_fsd > S(0)) {
                fsd_.setZero();
                q += lambda_fsd * static_cast<S>(f.discrepancy(u_, w, rho, fsd_));
                v += lambda_fsd * fsd_;
            }
        }
        q += lambda_wsd / S(2) * delta.squaredNorm();
        v += lambda_wsd * delta;
        return q;
    }

private:
    Vec<S> u_, fsd_;
};

/// Apo's rule: Δ = −η₀e^φ d, d the base's direction.
template <Real S, class BaseOpt, class MetaOptions>
class ApoRule {
public:
    using Scalar = S;
    using State = ApoState<S, typename BaseOpt::State>;
    using Options = ApoOptions<S, typename BaseOpt::Options, MetaOptions>;
    static constexpr std::string_view kName = "APO";
    static constexpr bool kLookahead = true;

    ApoRule(const Layout& layout, const Options& options)
        : layout_(layout),
          options_(options),
          eta0_(options.base.lr(0)),
          d_(Vec<S>::Zero(layout.size())),
          delta_(Vec<S>::Zero(layout.size())),
          objective_(layout.size()) {
        meta_layout_.add("log_lr", 1);
    }

    const Layout& meta_layout() const { return meta_layout_; }
    State initial_state() const {
        return {0, Vec<S>::Zero(1), BaseOpt::initial_state(layout_, options_.base)};
    }

    /// The learning rate η = η₀e^φ (exactly η₀ while φ = 0).
    S lr(const State& state) const { return eta0_ * std::exp(state.phi[0]); }

    bool meta_step_due(const State& state) const { return state.step % options_.interval == 0; }

    /// Q at u = x − ηd, d the base's direction from its state as it is; v = ∇_u Q.
    template <class F>
    S meta_objective(const State& state, const Eigen::Ref<const Vec<S>>& x,
                     const Eigen::Ref<const Vec<S>>& g, F& f, Vec<S>& v) const {
        BaseOpt::direction(state.base, options_.base, x, g, d_);
        delta_ = -lr(state) * d_;
        return objective_(f, x, delta_, options_.lambda_fsd, options_.lambda_wsd, options_.rho, v);
    }

    /// h = J_Δᵀ v = −η dᵀv (Δ = −η₀e^φ d), for the d of the last meta_objective.
    void hypergradient(const State& state, const Eigen::Ref<const Vec<S>>& v,
                       Eigen::Ref<Vec<S>> h) const {
        h[0] = -lr(state) * d_.dot(v);
    }

    /// Δ = −η₀e^φ d on the tape, for the d of the last meta_objective.
    ad::Var<S> record(ad::Tape<S>& tape, const State& state, S* h) const {
        const ad::Var<S> phi = tape.leaf(state.phi.data(), 1, 1, h);
        const ad::Var<S> d = tape.leaf(d_.data(), d_.size(), 1);
        return ad::scale(ad::scale(d, ad::exp(phi)), -eta0_);
    }

    /// Rejects a φ whose rate η₀e^φ overflows (φ finite, past log(max/η₀)).
    void check_state(const State& state) const {
        require_state(std::isfinite(lr(state)), "phi",
                      "gives a learning rate η₀e^φ that is not finite");
    }

    /// The base's step at η, which advances its state; an η that overflowed
    /// (φ has diverged) throws NonFinite before x or the base's state moves.
    void move(State& state, Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) const {
        const S eta = lr(state);
        if (!std::isfinite(eta))
            throw meta_parameters_diverged(kName);
        BaseOpt::apply_at(state.base, options_.base, eta, x, g);
    }

private:
    Layout layout_;
    Options options_;
    S eta0_;
    Layout meta_layout_;
    mutable Vec<S> d_, delta_;
    mutable MetaObjective<S> objective_;
};

/// ApoP's rule: Δ_W = −B (S⊙S⊙(Bᵀ V A)) Aᵀ per weight matrix, −η₀e^φ V elsewhere.
/// A factor of more than max_factor rows is not learned: it stays the identity
/// (S still scales every weight), and its products are skipped.
template <Real S, class MetaOptions>
class ApoPRule {
public:
    using Scalar = S;
    using State = ApoPState<S>;
    using Options = ApoPOptions<S, MetaOptions>;
    static constexpr std::string_view kName = "APO-P";
    static constexpr bool kLookahead = true;

    ApoPRule(const Layout& layout, const Options& options);

    static bool is_matrix(const Block& b) { return b.rows > 1 && b.cols > 1; }

    const Layout& meta_layout() const { return meta_layout_; }

    /// A = I, B = I, S = √η₀ (P = η₀I), and φ = 0 (η = η₀) for the other blocks.
    State initial_state() const;

    bool meta_step_due(const State& state) const { return state.step % options_.interval == 0; }

    /// Q at u = x + Δ(φ); v = ∇_u Q.
    template <class F>
    S meta_objective(const State& state, const Eigen::Ref<const Vec<S>>& x,
                     const Eigen::Ref<const Vec<S>>& g, F& f, Vec<S>& v) const {
        direction(state, g);
        return objective_(f, x, delta_, options_.lambda_fsd, options_.lambda_wsd, options_.rho, v);
    }

    /// h = J_Δᵀ v in closed form (the formulas at the top of the file), for the Δ of
    /// the last meta_objective.
    void hypergradient(const State& state, const Eigen::Ref<const Vec<S>>& v,
                       Eigen::Ref<Vec<S>> h) const;

    /// Δ on the tape, for the V of the last meta_objective.
    ad::Var<S> record(ad::Tape<S>& tape, const State& state, S* h) const;

    /// b ← μb + g, then x ← x + Δ(φ) (recomputed: φ may have just changed). Throws
    /// NonFinite, x and the state unchanged, when Δ is not finite (φ has diverged).
    void move(State& state, Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) const;

    /// tr(P)/(pq) for a weight matrix (the mean eigenvalue of P, η₀ at the start),
    /// η₀e^φ for another block: the block's effective learning rate.
    S block_lr(const State& state, std::size_t l) const;

private:
    /// The products of one weight matrix's step and meta-gradient (all p×q).
    struct Scratch {
        Mat<S> VA, K, C, BC, EA, BtEA, F, BF;
        Scratch(Index p, Index q)
            : VA(p, q), K(p, q), C(p, q), BC(p, q), EA(p, q), BtEA(p, q), F(p, q), BF(p, q) {}
    };
    /// A block of the layout (its index) and where its meta-parameters are: the indices of its
    /// meta blocks A, B, S (a weight matrix; −1 for a factor kept at I) or log_lr
    /// (another block), and its scratch.
    struct Factors {
        std::size_t block;
        Index log_lr, a, b, s, scratch;
    };

    /// Meta block `at` of φ (or of its hypergradient) as its matrix.
    template <class Flat>
    auto meta(Flat& phi, Index at) const {
        return block_view(phi, meta_layout_[static_cast<std::size_t>(at)]);
    }

    S lr(const State& state, const Factors& f) const {
        return options_.lr
               * std::exp(state.phi[meta_layout_[static_cast<std::size_t>(f.log_lr)].offset]);
    }

    /// out = F·m (left) or m·F, with F = meta block `factor` or its transpose; a
    /// copy where the factor is kept at I (factor < 0).
    template <class M, class Out>
    void by_factor(const State& state, Index factor, bool left, bool transpose, const M& m,
                   Out&& out) const {
        if (factor < 0) {
            out = m;
            return;
        }
        const auto F = meta(state.phi, factor);
        if (left)
            gemm_.multiply(F, transpose, m, false, out, false);
        else
            gemm_.multiply(m, false, F, transpose, out, false);
    }

    /// V = μb + g (or g), and Δ from it and φ, into v_ and delta_ (keeping the
    /// products the meta-gradient needs).
    void direction(const State& state, const Eigen::Ref<const Vec<S>>& g) const;

    Layout layout_;
    Options options_;
    Layout meta_layout_;
    std::vector<Factors> factors_;          // per block of the layout, in order
    mutable std::vector<Scratch> scratch_;  // per weight matrix
    mutable Vec<S> v_, delta_;
    mutable MetaObjective<S> objective_;
    mutable ad::detail::GemmWorkspace<S> gemm_;
};

// ApoPRule's members out of the class body, as OnlineMeta's (online_meta.hpp), so
// that its compiled instance (the end of the file) holds the step's products.

template <Real S, class MetaOptions>
ApoPRule<S, MetaOptions>::ApoPRule(const Layout& layout, const Options& options)
    : layout_(layout),
      options_(options),
      v_(Vec<S>::Zero(layout.size())),
      delta_(Vec<S>::Zero(layout.size())),
      objective_(layout.size()) {
    auto learned = [&](Index size) {
        return options_.max_factor == 0 || size <= options_.max_factor;
    };
    for (std::size_t l = 0; l < layout_.num_blocks(); ++l) {
        const Block& b = layout_[l];
        if (!is_matrix(b)) {
            factors_.push_back({l, static_cast<Index>(meta_layout_.num_blocks()), -1, -1, -1, -1});
            meta_layout_.add(concat("log_lr:", b.name), 1);
            continue;
        }
        Factors f{l, -1, -1, -1, -1, static_cast<Index>(scratch_.size())};
        if (learned(b.cols)) {
            f.a = static_cast<Index>(meta_layout_.num_blocks());
            meta_layout_.add(concat("A:", b.name), b.cols, b.cols);
        }
        if (learned(b.rows)) {
            f.b = static_cast<Index>(meta_layout_.num_blocks());
            meta_layout_.add(concat("B:", b.name), b.rows, b.rows);
        }
        f.s = static_cast<Index>(meta_layout_.num_blocks());
        meta_layout_.add(concat("S:", b.name), b.rows, b.cols);
        factors_.push_back(f);
        scratch_.emplace_back(b.rows, b.cols);
    }
    if (scratch_.empty())
        throw InvalidArgument(
            "Invalid layout: APO-P needs a weight matrix, a block with more than one row "
            "and column (use Apo for a learning rate alone)");
}

template <Real S, class MetaOptions>
auto ApoPRule<S, MetaOptions>::initial_state() const -> State {
    State state{0, Vec<S>::Zero(meta_layout_.size()),
                Vec<S>::Zero(options_.momentum > S(0) ? layout_.size() : 0)};
    for (const Factors& f : factors_) {
        if (f.log_lr >= 0)
            continue;
        if (f.a >= 0)
            meta(state.phi, f.a).setIdentity();
        if (f.b >= 0)
            meta(state.phi, f.b).setIdentity();
        meta(state.phi, f.s).setConstant(std::sqrt(options_.lr));
    }
    return state;
}

template <Real S, class MetaOptions>
void ApoPRule<S, MetaOptions>::hypergradient(const State& state, const Eigen::Ref<const Vec<S>>& v,
                                             Eigen::Ref<Vec<S>> h) const {
    for (const Factors& f : factors_) {
        const auto E = block_view(v, layout_[f.block]);
        const auto V = block_view(v_, layout_[f.block]);
        if (f.log_lr >= 0) {
            h[meta_layout_[static_cast<std::size_t>(f.log_lr)].offset] =
                -lr(state, f) * V.cwiseProduct(E).sum();
            continue;
        }
        Scratch& t = scratch_[static_cast<std::size_t>(f.scratch)];
        const auto Sf = meta(state.phi, f.s);
        by_factor(state, f.a, false, false, E, t.EA);     // E A
        by_factor(state, f.b, true, true, t.EA, t.BtEA);  // Bᵀ E A
        t.F = Sf.cwiseProduct(Sf).cwiseProduct(t.BtEA);
        meta(h, f.s) = S(-2) * Sf.cwiseProduct(t.K).cwiseProduct(t.BtEA);
        if (f.b >= 0) {
            auto hB = meta(h, f.b);
            gemm_.multiply(t.EA, false, t.C, true, hB, false);  // E A Cᵀ
            gemm_.multiply(t.VA, false, t.F, true, hB, true);   // + V A Fᵀ
            hB = -hB;
        }
        if (f.a >= 0) {
            auto hA = meta(h, f.a);
            gemm_.multiply(E, true, t.BC, false, hA, false);  // Eᵀ B C
            by_factor(state, f.b, true, false, t.F, t.BF);
            gemm_.multiply(V, true, t.BF, false, hA, true);  // + Vᵀ B F
            hA = -hA;
        }
    }
}

template <Real S, class MetaOptions>
ad::Var<S> ApoPRule<S, MetaOptions>::record(ad::Tape<S>& tape, const State& state, S* h) const {
    ad::Var<S> delta;
    auto leaf = [&](Index at) {
        const Block& m = meta_layout_[static_cast<std::size_t>(at)];
        return tape.leaf(state.phi.data() + m.offset, m.rows, m.cols, h ? h + m.offset : nullptr);
    };
    for (const Factors& f : factors_) {
        const Block& b = layout_[f.block];
        ad::Var<S> part = tape.leaf(v_.data() + b.offset, b.rows, b.cols);
        if (f.log_lr >= 0) {
            part = ad::scale(ad::scale(part, ad::exp(leaf(f.log_lr))), -options_.lr);
        } else {
            const ad::Var<S> Sv = leaf(f.s);
            const ad::Var<S> A = f.a >= 0 ? leaf(f.a) : ad::Var<S>();
            const ad::Var<S> B = f.b >= 0 ? leaf(f.b) : ad::Var<S>();
            if (f.a >= 0)
                part = ad::matmul(part, A);
            if (f.b >= 0)
                part = ad::matmul(B, part, true, false);
            part = ad::mul(ad::mul(Sv, Sv), part);
            if (f.b >= 0)
                part = ad::matmul(B, part);
            if (f.a >= 0)
                part = ad::matmul(part, A, false, true);
            part = ad::scale(ad::reshape(part, b.size(), 1), S(-1));
        }
        delta = &f == &factors_.front() ? part : ad::concat_rows(delta, part);
    }
    return delta;
}

template <Real S, class MetaOptions>
void ApoPRule<S, MetaOptions>::move(State& state, Eigen::Ref<Vec<S>> x,
                                    const Eigen::Ref<const Vec<S>>& g) const {
    direction(state, g);
    if (!all_finite(delta_))
        throw NonFinite(concat(kName,
                               ": the move is not finite: the meta-parameters have diverged "
                               "(lower meta.lr); x is unchanged"));
    if (options_.momentum > S(0))
        state.momentum_buffer = v_;
    x += delta_;
}

template <Real S, class MetaOptions>
S ApoPRule<S, MetaOptions>::block_lr(const State& state, std::size_t l) const {
    const Factors& f = factors_.at(l);
    if (f.log_lr >= 0)
        return lr(state, f);
    // Column k = i + p·j of A⊗B is A_{:,j} ⊗ B_{:,i}, of norm ‖A_{:,j}‖‖B_{:,i}‖.
    const Block& b = layout_[f.block];
    const auto Sf = meta(state.phi, f.s);
    const Vec<S> a = f.a >= 0 ? Vec<S>(meta(state.phi, f.a).colwise().squaredNorm().transpose())
                              : Vec<S>::Ones(b.cols);
    const Vec<S> bn = f.b >= 0 ? Vec<S>(meta(state.phi, f.b).colwise().squaredNorm().transpose())
                               : Vec<S>::Ones(b.rows);
    return (bn.asDiagonal() * Sf.cwiseProduct(Sf) * a.asDiagonal()).sum()
           / static_cast<S>(b.size());
}

template <Real S, class MetaOptions>
void ApoPRule<S, MetaOptions>::direction(const State& state,
                                         const Eigen::Ref<const Vec<S>>& g) const {
    if (options_.momentum > S(0))
        v_ = options_.momentum * state.momentum_buffer + g;
    else
        v_ = g;
    for (const Factors& f : factors_) {
        const auto V = block_view(v_, layout_[f.block]);
        auto D = block_view(delta_, layout_[f.block]);
        if (f.log_lr >= 0) {
            D = -lr(state, f) * V;
            continue;
        }
        Scratch& t = scratch_[static_cast<std::size_t>(f.scratch)];
        const auto Sf = meta(state.phi, f.s);
        by_factor(state, f.a, false, false, V, t.VA);
        by_factor(state, f.b, true, true, t.VA, t.K);  // K = Bᵀ V A
        t.C = Sf.cwiseProduct(Sf).cwiseProduct(t.K);
        by_factor(state, f.b, true, false, t.C, t.BC);
        by_factor(state, f.a, false, true, t.BC, D);  // B C Aᵀ
        D = -D;
    }
}

}  // namespace detail

template <Real S, class BaseOptions, class MetaOptions>
void ApoOptions<S, BaseOptions, MetaOptions>::validate() const {
    base.validate();
    if (!base.lr.is_constant())
        throw InvalidArgument(
            "Invalid lr: APO learns the learning rate, so the base's lr is its start η₀ and "
            "must be a number, not a schedule");
    detail::require_positive("lr", base.lr(0));
    detail::validate_meta_step(interval, lambda_fsd, lambda_wsd);
    meta.validate();
}

template <Real S, class MetaOptions>
void ApoPOptions<S, MetaOptions>::validate() const {
    detail::require_positive("lr", lr);
    detail::require_in("momentum", momentum, S(0), detail::Bound::closed, S(1),
                       detail::Bound::open);
    if (max_factor < 0)
        throw InvalidArgument(detail::concat(
            "Invalid max_factor: must be 0 (no limit) or positive, got ", max_factor));
    detail::validate_meta_step(interval, lambda_fsd, lambda_wsd);
    meta.validate();
}

/// APO's learning-rate adaptation of a base optimizer:
/// `Apo<float, Sgd<float>> opt(model.layout(), {.base = {.lr = 0.03, .momentum = 0.9}});`
template <Real S, DirectionalOptimizer BaseOpt = Sgd<S>, GradientOptimizer MetaOpt = Adam<S>>
requires std::same_as<typename BaseOpt::Scalar, S>
class Apo : public OnlineMeta<detail::ApoRule<S, BaseOpt, typename MetaOpt::Options>, MetaOpt> {
    using Loop = OnlineMeta<detail::ApoRule<S, BaseOpt, typename MetaOpt::Options>, MetaOpt>;

public:
    using Loop::Loop;

    /// The learned learning rate η.
    S lr() const { return this->rule().lr(this->state()); }

    /// Calls f("lr", η): what CsvLogger writes.
    template <class F>
    void for_each_learned(F&& f) const {
        f("lr", static_cast<double>(lr()));
    }
};

/// APO with the Kronecker-factored preconditioner:
/// `ApoP<float> opt(model.layout(), {.lr = 0.1, .momentum = 0.9});`
template <Real S, GradientOptimizer MetaOpt = Adam<S>>
class ApoP : public OnlineMeta<detail::ApoPRule<S, typename MetaOpt::Options>, MetaOpt> {
    using Loop = OnlineMeta<detail::ApoPRule<S, typename MetaOpt::Options>, MetaOpt>;

public:
    using Loop::Loop;

    /// Block l's effective learning rate: tr(P)/(pq) for a weight matrix, η for another
    /// (InvalidArgument for an l past the last block).
    S lr(std::size_t l) const {
        this->layout().require_index(l);
        return this->rule().block_lr(this->state(), l);
    }

    /// Calls f("lr:<block>", lr(l)) for every block: what CsvLogger writes.
    template <class F>
    void for_each_learned(F&& f) const {
        const Layout& layout = this->layout();
        for (std::size_t l = 0; l < layout.num_blocks(); ++l)
            f(detail::concat("lr:", layout[l].name), static_cast<double>(lr(l)));
    }
};

// APO-P's products for float, compiled once (core/instances.hpp): five of our files
// step ApoP<float>, one ApoP<double>, which compiles its own.
SCALTRA_INSTANCE(class detail::ApoPRule<float, AdamOptions<float>>)

}  // namespace scaltra
