// DCO: optimizers defined as differentiable convex programs (Gautam, Pfrommer &
// Sojoudi, 2023; ALGORITHMS.md, "DCO"; research-apo-dco.md §4). Each step is the
// minimiser of an unconstrained convex quadratic in the new point, in closed form
// (the generic tape layer is autodiff/ops_qp.hpp):
//   DCOG    θ⁺ = argmin Gᵀθ + ½‖Λ⊙(θ − θₜ)‖²   = θₜ − G ⊘ Λ²
//   DCOGD   θ⁺ = argmin (BG)ᵀθ + ½‖θ − θₜ‖²     = θₜ − B G
//   DCOM    S⁺ = M⊙G + (1 − M)⊙S, θ⁺ = θₜ − S⁺ ⊘ Λ²   (S = G on the first step)
// G is the gradient, divided by its ℓ₂ norm when normalize_gradient (the paper's
// setting). The learned φ is meta-trained over a task distribution (meta_train,
// train/meta_train.hpp), then frozen: step(x, f) is then an ordinary optimizer.
//
// Parameterisation. Λ = Λ₀e^φ with Λ₀ = 1/√η₀ (φ = log(Λ/Λ₀), one per weight), so
// Λ > 0 for every finite φ and the rate is 1/Λ² = η₀e^{−2φ}: exactly η₀ while
// φ = 0, so an untrained DCOG is SGD at η₀ bit for bit. M starts at 1 − β (EMA
// momentum) and B at η₀I (the paper's B₀ = I is η₀ = 1); both are unconstrained,
// as in the paper. DCOGD's B is one full p×p matrix over all the parameters (the
// paper's, and what Theorem 1 needs), so p is limited: a layout of more than
// max_size elements is refused with InvalidArgument.
//
// Meta-gradients (per task, T inner steps, reverse through the unrolled steps):
// with a = ∂l_val/∂θ_{k+1} and r = η₀e^{−2φ},
//   DCOG    ∂/∂φ += 2 r⊙G_k⊙a,          a_G = −r⊙a
//   DCOGD   ∂/∂B −= a G_kᵀ,             a_G = −Bᵀa
//   DCOM    a_S += −r⊙a, ∂/∂φ += 2 r⊙S_{k+1}⊙a; for k > 0 ∂/∂M += a_S⊙(G_k − S_k),
//           a_G = M⊙a_S, a_S ← (1 − M)⊙a_S (for k = 0, S₁ = G₀: a_G = a_S)
// then a ← a + ∇²l(θ_k)·J_k a_G, J_k = (I − G_kG_kᵀ)/‖∇l(θ_k)‖ the normalisation's
// Jacobian (I without it): one Hessian-vector product of the training loss per
// step but the first (θ₀ is fixed). At T = 1 none is needed, and DCOM's M gets
// exactly zero gradient (S₁ = G₀ whatever M is).
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <string_view>
#include <utility>

#include "../core/concepts.hpp"
#include "../core/layout.hpp"
#include "../core/state_io.hpp"
#include "dco_rules.hpp"
#include "optimizer_base.hpp"
#include "rmsprop.hpp"

namespace scaltra {

/// The shared optimizer of the DCO rules (Dcog, Dcom, Dcogd below): the step of
/// the concept, the learned φ in the state, the meta-optimizer, and what
/// meta_train needs: a per-task unrolled meta-gradient and the checked meta-step.
template <class Rule, GradientOptimizer MetaOpt>
class Dco {
    using S = typename MetaOpt::Scalar;

public:
    using Scalar = S;
    using State = DcoState<S>;
    using Options = typename Rule::Options;
    using MetaOptimizer = MetaOpt;

    /// For a parameter layout (or a size); throws InvalidArgument naming the first
    /// option out of its range (DCOGD: a layout above max_size).
    explicit Dco(Layout layout, Options options = {})
        : layout_(validated_layout(std::move(layout))),
          options_(validated(std::move(options))),
          rule_(layout_, options_),
          meta_(rule_.meta_layout(), options_.meta),
          meta_backup_(meta_),
          state_(initial_state()),
          phi_backup_(state_.phi),
          grad_(Vec<S>::Zero(layout_.size())) {
        rule_.refresh(state_.phi);
    }

    /// Evaluates f at x and moves x by the rule with φ as learned; returns the
    /// loss at the incoming x.
    template <Objective<S> F>
    S step(Eigen::Ref<Vec<S>> x, F&& f) {
        S loss;
        if (detail::evaluate_checked<S>(name(), options_.on_non_finite, layout_.size(), x,
                                        std::forward<F>(f), grad_, loss))
            apply(x, grad_);
        else
            ++skipped_steps_;
        return loss;
    }

    /// The same for a gradient g the caller already has.
    void update(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        if (detail::gradient_checked<S>(name(), options_.on_non_finite, layout_.size(), x, g))
            apply(x, g);
        else
            ++skipped_steps_;
    }

    /// Back to a freshly constructed optimizer: φ₀, and the meta-optimizer's start.
    void reset() {
        state_ = initial_state();
        meta_.reset();
        rule_.refresh(state_.phi);
        skipped_steps_ = 0;
    }

    /// The steps and updates skipped on a non-finite value (NonFinitePolicy::skip)
    /// since construction or reset(); meta-steps skipped by meta_train are counted
    /// in its result. A count of this object's calls, not saved.
    std::int64_t skipped_steps() const { return skipped_steps_; }

    /// Back to step 0 (DCOM's S forgotten), keeping what was learned: for a new task.
    void restart() {
        state_.step = 0;
        state_.momentum.setZero();
    }

    std::string_view name() const { return Rule::kName; }
    const State& state() const { return state_; }
    const Options& options() const { return options_; }
    const Layout& layout() const { return layout_; }
    const Rule& rule() const { return rule_; }
    const MetaOpt* meta_optimizer() const { return &meta_; }

    /// The state (φ included), then the meta-optimizer's state.
    void save(std::ostream& out) const {
        save_state<S>(out, name(), state_);
        meta_.save(out);
    }

    /// Replaces the state (φ included) by `state`, with load's checks (shapes,
    /// finite values and learning rates); all or nothing: throws CorruptState
    /// naming the field and leaves the state as it was.
    void set_state(State state) {
        check_state<S>(state, state_);
        Rule rule = refreshed(state.phi);
        state_ = std::move(state);
        rule_ = std::move(rule);
    }

    /// Replaces the meta-optimizer's state, as its own set_state does.
    void set_meta_state(typename MetaOpt::State state) { meta_.set_state(std::move(state)); }

    /// φ's named blocks (README, "A state you build"): block_view(s.phi, meta_layout().at("M")).
    const Layout& meta_layout() const { return rule_.meta_layout(); }

    /// All or nothing: both states are read and checked before either replaces
    /// the current one.
    void load(std::istream& in) {
        State loaded = state_;
        load_state<S>(in, name(), loaded);
        Rule rule = refreshed(loaded.phi);
        meta_.load(in);  // all or nothing by itself, and the last thing that can fail
        state_ = std::move(loaded);
        rule_ = std::move(rule);
    }

    /// Calls f(name, value) for a summary of what is learned (CsvLogger's columns).
    template <class F>
    void for_each_learned(F&& f) const {
        rule_.for_each_learned(state_.phi, f);
    }

    // ---- meta-training (train/meta_train.hpp) ------------------------------

    /// One task's scratch for `steps` inner steps: the unrolled trajectory and the
    /// task's meta-gradient. Allocated once; reused every meta-epoch.
    struct Workspace {
        Index steps = 0;
        Mat<S> theta, G, s;  ///< θ_k, G_k (p×T); DCOM's S_k (p×(T+1))
        Vec<S> scale;        ///< c_k = 1/‖∇l(θ_k)‖ (or 1)
        Vec<S> x, grad, a, a_s, a_g, w, hv;
        typename Rule::TaskGradient gradient;
    };

    Workspace workspace(Index steps) const {
        detail::require_positive("inner_steps", steps);
        const Index n = layout_.size();
        Workspace ws;
        ws.steps = steps;
        ws.theta.setZero(n, steps);
        ws.G.setZero(n, steps);
        ws.s.setZero(Rule::kMomentum ? n : 0, steps + 1);
        ws.scale.setZero(steps);
        for (Vec<S>* v : {&ws.x, &ws.grad, &ws.a, &ws.a_s, &ws.a_g, &ws.w, &ws.hv})
            v->setZero(n);
        rule_.begin(ws.gradient, steps);
        return ws;
    }

    /// l_val(θ_T) after the workspace's T inner steps on `task` from its initial
    /// point, with the current φ (NaN when a loss or gradient turned non-finite).
    template <class Task>
    requires MetaTask<Task, S>
    S unrolled_loss(Task& task, Workspace& ws) const {
        return unroll(task, ws);
    }

    /// The same, and its gradient with respect to φ into the workspace (added to
    /// a sum by add_meta_gradient). More than one inner step needs the task's
    /// Hessian-vector products.
    template <class Task>
    requires MetaTask<Task, S>
    S meta_gradient(Task& task, Workspace& ws) const {
        if constexpr (!SecondOrderTask<Task, S>)
            if (ws.steps > 1)
                throw InvalidArgument(detail::concat(
                    "Invalid inner_steps: ", ws.steps,
                    " inner steps need the task's hessian_vector_product(x, v, hv) (a "
                    "SecondOrderTask); a task without one is meta-trained at inner_steps = 1"));
        const S loss = unroll(task, ws);
        rule_.begin(ws.gradient, ws.steps);
        if (!std::isfinite(loss) || !detail::all_finite(ws.a))
            return std::numeric_limits<S>::quiet_NaN();
        ws.a_s.setZero();
        for (Index k = ws.steps; k-- > 0;) {
            const auto s_prev = ws.s.col(Rule::kMomentum ? k : 0);
            const auto s_next = ws.s.col(Rule::kMomentum ? k + 1 : 0);
            rule_.backward(state_.phi, k, ws.G.col(k), s_prev, s_next, ws.a, ws.a_s, ws.a_g,
                           ws.gradient);
            if (k == 0)
                break;  // θ₀ is fixed
            if constexpr (SecondOrderTask<Task, S>) {
                if (options_.normalize_gradient)  // J_k a_G = c(a_G − G(Gᵀa_G))
                    ws.w = ws.scale[k] * (ws.a_g - ws.G.col(k) * ws.G.col(k).dot(ws.a_g));
                else
                    ws.w = ws.a_g;
                ws.hv.setZero();
                const Eigen::Ref<const Vec<S>> at(ws.theta.col(k)), w(ws.w);
                Eigen::Ref<Vec<S>> hv(ws.hv);
                task.hessian_vector_product(at, w, hv);
                ws.a += ws.hv;
            }
        }
        return loss;
    }

    /// h += weight·(the workspace's meta-gradient). Throws DimensionMismatch for
    /// an h not of φ's size or another optimizer's workspace, InvalidArgument for
    /// a non-finite weight; h is then unchanged.
    void add_meta_gradient(const Workspace& ws, S weight, Eigen::Ref<Vec<S>> h) const {
        detail::require_size("meta-gradient", h.size(), state_.phi.size());
        check_workspace(ws);
        if (!std::isfinite(weight))
            throw InvalidArgument(detail::concat("Invalid weight: must be finite, got ", weight));
        rule_.add_to(ws.gradient, weight, h);
    }

    /// The meta-step φ ← MetaOpt(φ, h). A non-finite h, or a step that would make
    /// the rule's rates non-finite, follows the policy: false, nothing changed,
    /// under skip; NonFinite, nothing changed, under raise.
    bool meta_update(const Eigen::Ref<const Vec<S>>& h) {
        detail::require_size("meta-gradient", h.size(), state_.phi.size());
        if (!detail::all_finite(h))
            return refuse("the meta-gradient is not finite");
        phi_backup_ = state_.phi;
        meta_backup_ = meta_;
        meta_.update(state_.phi, h);
        if (rule_.refresh(state_.phi))
            return true;
        state_.phi = phi_backup_;
        meta_ = meta_backup_;
        rule_.refresh(state_.phi);
        return refuse("the meta-step would make the learned rates non-finite (lower meta.lr)");
    }

private:
    static Layout validated_layout(Layout layout) {
        if (layout.size() == 0)
            throw InvalidArgument("Invalid layout: it has no elements");
        return layout;
    }
    static Options validated(Options options) {
        options.validate();
        return options;
    }

    /// The rule with its rates refreshed from `phi`; CorruptState where one is not finite.
    Rule refreshed(const Vec<S>& phi) const {
        Rule rule = rule_;
        if (!rule.refresh(phi))
            throw CorruptState(detail::concat("State field 'phi' gives ", name(),
                                              " a non-finite learning rate"));
        return rule;
    }

    State initial_state() const {
        return {0, rule_.initial_phi(), Vec<S>::Zero(Rule::kMomentum ? layout_.size() : 0)};
    }

    S scale_of(const Eigen::Ref<const Vec<S>>& g) const {
        return options_.normalize_gradient ? detail::inverse_norm<S>(g) : S(1);
    }

    void apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        rule_.advance(state_.phi, state_.step, scale_of(g), g, state_.momentum, x);
        ++state_.step;
        if (!detail::all_finite(x))
            throw detail::move_overflowed(name());
    }

    bool refuse(std::string_view why) const {
        if (options_.on_non_finite == NonFinitePolicy::skip)
            return false;
        throw NonFinite(detail::concat(name(), ": ", why,
                                       "; phi and the meta-optimizer are unchanged"));
    }

    /// A workspace this optimizer made (workspace(T)), not another's.
    void check_workspace(const Workspace& ws) const {
        if (ws.theta.rows() != layout_.size())
            throw DimensionMismatch(detail::concat("Dco: a workspace for ", ws.theta.rows(),
                                                   " parameters, the optimizer has ",
                                                   layout_.size()));
    }

    /// The T inner steps from the task's initial point: θ_k, G_k, c_k (and S_k)
    /// into ws, θ_T in ws.x, ∇l_val(θ_T) in ws.a; returns l_val(θ_T).
    template <class Task>
    S unroll(Task& task, Workspace& ws) const {
        const Index n = layout_.size();
        const Eigen::Ref<const Vec<S>> start(task.initial_point());
        detail::require_size("task initial point", start.size(), n);
        check_workspace(ws);
        ws.x = start;
        if constexpr (Rule::kMomentum)
            ws.s.col(0).setZero();
        for (Index k = 0; k < ws.steps; ++k) {
            ws.theta.col(k) = ws.x;
            ws.grad.setZero();
            const Eigen::Ref<const Vec<S>> at(ws.x);
            Eigen::Ref<Vec<S>> grad(ws.grad);
            const S loss = static_cast<S>(task.train_loss(at, grad));
            if (!std::isfinite(loss) || !detail::all_finite(ws.grad))
                return std::numeric_limits<S>::quiet_NaN();
            const S c = scale_of(ws.grad);
            ws.scale[k] = c;
            ws.G.col(k) = c * ws.grad;
            if constexpr (Rule::kMomentum) {
                ws.s.col(k + 1) = ws.s.col(k);
                rule_.advance(state_.phi, k, c, ws.grad, ws.s.col(k + 1), ws.x);
            } else {
                rule_.advance(state_.phi, k, c, ws.grad, ws.grad, ws.x);
            }
        }
        ws.a.setZero();
        const Eigen::Ref<const Vec<S>> at(ws.x);
        Eigen::Ref<Vec<S>> a(ws.a);
        return static_cast<S>(task.validation_loss(at, a));
    }

    Layout layout_;
    Options options_;
    Rule rule_;
    MetaOpt meta_, meta_backup_;
    State state_;
    Vec<S> phi_backup_, grad_;
    std::int64_t skipped_steps_ = 0;
};

/// DCOG, per-weight learning rates 1/Λ²:
/// `Dcog<double> opt(p, {.lr = 0.01}); meta_train(opt, tasks, {.inner_steps = 5});`
template <Real S, GradientOptimizer MetaOpt = RmsProp<S>>
requires std::same_as<typename MetaOpt::Scalar, S>
class Dcog : public Dco<detail::DcogRule<S, typename MetaOpt::Options>, MetaOpt> {
    using Base = Dco<detail::DcogRule<S, typename MetaOpt::Options>, MetaOpt>;

public:
    using Base::Base;

    /// The learned per-weight learning rates 1/Λ².
    const Vec<S>& lr() const { return this->rule().rate(); }
};

/// DCOM, learned per-weight momentum M and learning rates 1/Λ².
template <Real S, GradientOptimizer MetaOpt = RmsProp<S>>
requires std::same_as<typename MetaOpt::Scalar, S>
class Dcom : public Dco<detail::DcomRule<S, typename MetaOpt::Options>, MetaOpt> {
    using Base = Dco<detail::DcomRule<S, typename MetaOpt::Options>, MetaOpt>;

public:
    using Base::Base;

    const Vec<S>& lr() const { return this->rule().rate(); }
    /// The learned momentum weights M (S⁺ = M⊙G + (1 − M)⊙S).
    auto mix() const { return this->state().phi.tail(this->layout().size()); }
};

/// DCOGD, a learned full p×p matrix B (θ⁺ = θ − BG).
template <Real S, GradientOptimizer MetaOpt = RmsProp<S>>
requires std::same_as<typename MetaOpt::Scalar, S>
class Dcogd : public Dco<detail::DcogdRule<S, typename MetaOpt::Options>, MetaOpt> {
    using Base = Dco<detail::DcogdRule<S, typename MetaOpt::Options>, MetaOpt>;

public:
    using Base::Base;

    /// The learned B.
    Eigen::Map<const Mat<S>> matrix() const { return this->rule().matrix(this->state().phi); }
};

}  // namespace scaltra
