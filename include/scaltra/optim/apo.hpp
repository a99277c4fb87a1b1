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
// S (p×q), and P = η₀I at the start (A = I, B = I, S = √η₀). Every other block (a
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
    S lambda_wsd = S(0);    ///< λ_WSD
    Discrepancy rho = Discrepancy::kl_softmax;  ///< ρ of the function-space term
    MetaOptions meta = {.lr = S(0.05)};         ///< on φ = log(η/η₀)
    Hypergradient hypergradient = Hypergradient::closed_form;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const;
};

template <Real S, class MetaOptions = AdamOptions<S>>
struct ApoPOptions {
    S lr = S(0.01);       ///< η₀: P = η₀I at the start, and each other block's learning rate
    S momentum = S(0);    ///< μ: Δ = −P b with b ← μb + g (0: Δ = −P g)
    Index interval = 10;  ///< K: a meta-step every K steps, the first at step 0
    S lambda_fsd = S(0);  ///< λ_FSD; > 0 needs a ModelObjective
    S lambda_wsd = S(0);  ///< λ_WSD
    Discrepancy rho = Discrepancy::kl_softmax;  ///< ρ of the function-space term
    MetaOptions meta = {.lr = S(1e-3)};         ///< on A, B, S and the log learning rates
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

    /// The base's step at η, which advances its state.
    void move(State& state, Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) const {
        BaseOpt::apply_at(state.base, options_.base, lr(state), x, g);
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
template <Real S, class MetaOptions>
class ApoPRule {
public:
    using Scalar = S;
    using State = ApoPState<S>;
    using Options = ApoPOptions<S, MetaOptions>;
    static constexpr std::string_view kName = "APO-P";
    static constexpr bool kLookahead = true;

    ApoPRule(const Layout& layout, const Options& options)
        : layout_(layout),
          options_(options),
          v_(Vec<S>::Zero(layout.size())),
          delta_(Vec<S>::Zero(layout.size())),
          objective_(layout.size()) {
        for (const Block& b : layout_.blocks()) {
            if (!is_matrix(b)) {
                meta_layout_.add(concat("log_lr:", b.name), 1);
                continue;
            }
            meta_layout_.add(concat("A:", b.name), b.cols, b.cols);
            meta_layout_.add(concat("B:", b.name), b.rows, b.rows);
            meta_layout_.add(concat("S:", b.name), b.rows, b.cols);
            scratch_.emplace_back(b.rows, b.cols);
        }
        if (scratch_.empty())
            throw InvalidArgument(
                "Invalid layout: APO-P needs a weight matrix, a block with more than one row "
                "and column (use Apo for a learning rate alone)");
    }

    static bool is_matrix(const Block& b) { return b.rows > 1 && b.cols > 1; }

    const Layout& meta_layout() const { return meta_layout_; }

    /// A = I, B = I, S = √η₀ (P = η₀I), and φ = 0 (η = η₀) for the other blocks.
    State initial_state() const {
        State state{0, Vec<S>::Zero(meta_layout_.size()),
                    Vec<S>::Zero(options_.momentum > S(0) ? layout_.size() : 0)};
        for_each_block([&](const Block& b, const Factors& f) {
            if (f.matrix) {
                block_view(state.phi, *f.a).setIdentity();
                block_view(state.phi, *f.b).setIdentity();
                block_view(state.phi, *f.s).setConstant(std::sqrt(options_.lr));
            }
            (void)b;
        });
        return state;
    }

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
                       Eigen::Ref<Vec<S>> h) const {
        for_each_block([&](const Block& b, const Factors& f) {
            const auto E = block_view(v, b);
            const auto V = block_view(v_, b);
            if (!f.matrix) {
                h[f.log_lr->offset] = -lr(state, *f.log_lr) * V.cwiseProduct(E).sum();
                return;
            }
            Scratch& t = *f.scratch;
            const auto A = block_view(state.phi, *f.a);
            const auto B = block_view(state.phi, *f.b);
            const auto Sf = block_view(state.phi, *f.s);
            auto hA = block_view(h, *f.a);
            auto hB = block_view(h, *f.b);
            auto hS = block_view(h, *f.s);
            gemm_.multiply(E, false, A, false, t.EA, false);
            gemm_.multiply(B, true, t.EA, false, t.BtEA, false);
            t.F = Sf.cwiseProduct(Sf).cwiseProduct(t.BtEA);
            hS = S(-2) * Sf.cwiseProduct(t.K).cwiseProduct(t.BtEA);
            gemm_.multiply(t.EA, false, t.C, true, hB, false);  // E A Cᵀ
            gemm_.multiply(t.VA, false, t.F, true, hB, true);   // + V A Fᵀ
            hB = -hB;
            gemm_.multiply(E, true, t.BC, false, hA, false);  // Eᵀ B C
            gemm_.multiply(B, false, t.F, false, t.BF, false);
            gemm_.multiply(V, true, t.BF, false, hA, true);  // + Vᵀ B F
            hA = -hA;
        });
    }

    /// Δ on the tape, for the V of the last meta_objective.
    ad::Var<S> record(ad::Tape<S>& tape, const State& state, S* h) const {
        ad::Var<S> delta;
        bool first = true;
        for_each_block([&](const Block& b, const Factors& f) {
            const ad::Var<S> V = tape.leaf(v_.data() + b.offset, b.rows, b.cols);
            ad::Var<S> part;
            if (!f.matrix) {
                const auto& l = *f.log_lr;
                const ad::Var<S> phi =
                    tape.leaf(state.phi.data() + l.offset, 1, 1, h ? h + l.offset : nullptr);
                part = ad::scale(ad::scale(V, ad::exp(phi)), -options_.lr);
            } else {
                auto leaf = [&](const Block& m) {
                    return tape.leaf(state.phi.data() + m.offset, m.rows, m.cols,
                                     h ? h + m.offset : nullptr);
                };
                const ad::Var<S> A = leaf(*f.a), B = leaf(*f.b), Sv = leaf(*f.s);
                const ad::Var<S> K = ad::matmul(B, ad::matmul(V, A), true, false);
                const ad::Var<S> D =
                    ad::matmul(ad::matmul(B, ad::mul(ad::mul(Sv, Sv), K)), A, false, true);
                part = ad::scale(ad::reshape(D, b.size(), 1), S(-1));
            }
            delta = first ? part : ad::concat_rows(delta, part);
            first = false;
        });
        return delta;
    }

    /// b ← μb + g, then x ← x + Δ(φ) (recomputed: φ may have just changed). Throws
    /// NonFinite, x and the state unchanged, when Δ is not finite (φ has diverged).
    void move(State& state, Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) const {
        direction(state, g);
        if (!all_finite(delta_))
            throw NonFinite(concat(kName,
                                   ": the move is not finite: the meta-parameters have diverged "
                                   "(lower meta.lr); x is unchanged"));
        if (options_.momentum > S(0))
            state.momentum_buffer = v_;
        x += delta_;
    }

    /// tr(P)/(pq) for a weight matrix (the mean eigenvalue of P, η₀ at the start),
    /// η₀e^φ for another block: the block's effective learning rate.
    S block_lr(const State& state, std::size_t l) const {
        S out = S(0);
        std::size_t at = 0;
        for_each_block([&](const Block& b, const Factors& f) {
            if (at++ != l)
                return;
            if (!f.matrix) {
                out = lr(state, *f.log_lr);
                return;
            }
            // column k = i + p·j of A⊗B is A_{:,j} ⊗ B_{:,i}, of norm ‖A_{:,j}‖‖B_{:,i}‖
            const auto A = block_view(state.phi, *f.a);
            const auto B = block_view(state.phi, *f.b);
            const auto Sf = block_view(state.phi, *f.s);
            const Vec<S> a = A.colwise().squaredNorm().transpose();
            const Vec<S> bn = B.colwise().squaredNorm().transpose();
            out = (bn.asDiagonal() * Sf.cwiseProduct(Sf) * a.asDiagonal()).sum()
                  / static_cast<S>(b.size());
        });
        return out;
    }

private:
    /// The products of one weight matrix's step and meta-gradient (p×q, but BF).
    struct Scratch {
        Mat<S> VA, K, C, BC, EA, BtEA, F, BF;
        Scratch(Index p, Index q)
            : VA(p, q), K(p, q), C(p, q), BC(p, q), EA(p, q), BtEA(p, q), F(p, q), BF(p, q) {}
    };
    /// Where a block's meta-parameters are.
    struct Factors {
        bool matrix;
        const Block *a, *b, *s, *log_lr;
        Scratch* scratch;
    };

    /// Calls f(block, factors) for every block of the layout, in order.
    template <class Fn>
    void for_each_block(Fn&& fn) const {
        std::size_t meta = 0, matrices = 0;
        for (const Block& b : layout_.blocks()) {
            if (is_matrix(b)) {
                fn(b, Factors{true, &meta_layout_[meta], &meta_layout_[meta + 1],
                              &meta_layout_[meta + 2], nullptr, &scratch_[matrices++]});
                meta += 3;
            } else {
                fn(b, Factors{false, nullptr, nullptr, nullptr, &meta_layout_[meta], nullptr});
                meta += 1;
            }
        }
    }

    S lr(const State& state, const Block& log_lr) const {
        return options_.lr * std::exp(state.phi[log_lr.offset]);
    }

    /// V = μb + g (or g), and Δ from it and φ, into v_ and delta_ (keeping the
    /// products the meta-gradient needs).
    void direction(const State& state, const Eigen::Ref<const Vec<S>>& g) const {
        if (options_.momentum > S(0))
            v_ = options_.momentum * state.momentum_buffer + g;
        else
            v_ = g;
        for_each_block([&](const Block& b, const Factors& f) {
            const auto V = block_view(v_, b);
            auto D = block_view(delta_, b);
            if (!f.matrix) {
                D = -lr(state, *f.log_lr) * V;
                return;
            }
            Scratch& t = *f.scratch;
            const auto A = block_view(state.phi, *f.a);
            const auto B = block_view(state.phi, *f.b);
            const auto Sf = block_view(state.phi, *f.s);
            gemm_.multiply(V, false, A, false, t.VA, false);
            gemm_.multiply(B, true, t.VA, false, t.K, false);  // K = Bᵀ V A
            t.C = Sf.cwiseProduct(Sf).cwiseProduct(t.K);
            gemm_.multiply(B, false, t.C, false, t.BC, false);
            gemm_.multiply(t.BC, false, A, true, D, false);  // B C Aᵀ
            D = -D;
        });
    }

    Layout layout_;
    Options options_;
    Layout meta_layout_;
    mutable std::vector<Scratch> scratch_;  // per weight matrix
    mutable Vec<S> v_, delta_;
    mutable MetaObjective<S> objective_;
    mutable ad::detail::GemmWorkspace<S> gemm_;
};

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

    /// Block l's effective learning rate: tr(P)/(pq) for a weight matrix, η for another.
    S lr(std::size_t l) const { return this->rule().block_lr(this->state(), l); }

    /// Calls f("lr:<block>", lr(l)) for every block: what CsvLogger writes.
    template <class F>
    void for_each_learned(F&& f) const {
        const Layout& layout = this->layout();
        for (std::size_t l = 0; l < layout.num_blocks(); ++l)
            f(detail::concat("lr:", layout[l].name), static_cast<double>(lr(l)));
    }
};

}  // namespace scaltra
