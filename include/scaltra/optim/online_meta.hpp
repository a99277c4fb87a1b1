// The online meta-learning loop shared by the learned optimizers (SCALTRA, LODO,
// APO's online form), written once (ARCHITECTURE.md, "Online meta-learning").
//
// A rule moves x by Δ(φ; state), a function of its meta-parameters φ. One call
// of step(x, f):
//   1. g = ∇f(x)                                   (checked, as every optimizer)
//   2. if a move was made before: h = J_Δᵀ g, the hypergradient ∂f(x)/∂φ of the
//      last move x = x_prev + Δ(φ), and φ ← MetaOpt(φ, h)
//   3. rule.observe(state, x, g)                   (momentum, the next γ, …)
//   4. x ← x + Δ(φ; state), and state.step counts the move; a φ or a Δ that is
//      not finite (φ has diverged) throws NonFinite with x unchanged, whatever
//      the policy, and the optimizer wants reset() or a checkpoint; a move that
//      overflows x (a state no run reaches) throws NonFinite after it
// Step 2 uses the state and φ as they were for the last move (the meta-update
// comes before step 3 changes the state), so the hypergradient is recomputed
// from the state: nothing of the last step's recording has to outlive it, and a
// saved state resumes exactly.
//
// A rule supplies (see the LearnedRule concept):
//   types Scalar, State (a StateAggregate with members `step`, the moves made,
//   and `phi`, a vector of Scalar, or of the meta-optimizer's compact Stored
//   type: then the meta-step writes it piece by piece, as the meta-optimizer
//   narrows its own state), Options; kName; a constructor
//   Rule(const Layout&, const Options&)
//   meta_layout()                 φ's blocks
//   initial_state()               step 0, φ₀ and the rest of the state
//   observe(state, x, g)          step 3 (state.step is the number of moves so far;
//                                 x is where the move starts)
//   record(tape, state, h)        Δ(φ; state) on the tape; φ's leaves add their
//                                 gradients into h (none when h is null)
// and, optionally, closed forms, used unless `options.hypergradient` says tape:
//   move(state, x)                x ← x + Δ(φ; state)
//   hypergradient(state, g, h)    h = J_Δᵀ g
// and check_state(state), which throws CorruptState for a loaded state whose
// shapes fit but which the rule's options cannot use, and
//   fused_apply(state, meta, x, g)  steps 2–4 at once, in fewer passes over
//                                 memory, for the closed form; it returns false,
//                                 having changed nothing, where it does not apply.
//                                 A rule that has one says so (kFusedStep = true),
//                                 so that a drifted signature fails to compile
//                                 instead of silently taking the separate steps.
// Options must have `meta` (the MetaOpt's options), `hypergradient`,
// `on_non_finite` and `validate()`. A rule without meta-parameters (LODO at
// depth 0) gets no meta-optimizer and is its plain update.
//
// A look-ahead rule (kLookahead = true: APO) learns instead from the step it is
// about to take, on the same batch, every so many steps. One call of step(x, f):
//   1. g = ∇f(x)                                   (checked)
//   2. if rule.meta_step_due(state): q = rule.meta_objective(state, x, g, f, v)
//      writes v, the gradient of the rule's meta-objective at the look-ahead point
//      x + Δ(φ; state, g) (it may call f there again, and ask a ModelObjective for
//      more), keeping in the rule's scratch what the move's derivative needs; then
//      h = J_Δᵀ v (hypergradient() or record(), as above) and φ ← MetaOpt(φ, h)
//   3. rule.move(state, x, g)                      x ← x + Δ(φ) with the new φ;
//                                                  the rule's own state (APO's
//                                                  base optimizer) advances here,
//                                                  once per step
// So a step that fails (f throws, or a non-finite meta-gradient under either
// policy) leaves x and the state untouched. Such a rule's move is always its
// closed form, and it has no update(x, g): the look-ahead needs the objective.
#pragma once

#include <concepts>
#include <cstdint>
#include <istream>
#include <optional>
#include <ostream>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../autodiff/tape.hpp"
#include "../core/bfloat16.hpp"
#include "../core/concepts.hpp"
#include "../core/instances.hpp"
#include "../core/layout.hpp"
#include "../core/state_io.hpp"
#include "optimizer_base.hpp"

namespace scaltra {

namespace detail {
/// The error of a step whose meta-parameters φ, or whose move, came out non-finite
/// from finite input: φ has diverged (a meta.lr too high, or a loaded state this
/// optimizer does not reach). x has not moved; the state has, so the optimizer
/// wants reset() or a checkpoint, whatever the NonFinitePolicy.
inline NonFinite meta_parameters_diverged(std::string_view name) {
    return NonFinite(concat(name,
                            ": the meta-parameters or the move are not finite: the "
                            "meta-parameters have diverged (lower meta.lr); x is unchanged, "
                            "the optimizer wants reset() or a checkpoint"));
}
}  // namespace detail

/// How a learned optimizer differentiates its step with respect to φ.
enum class Hypergradient {
    closed_form,  ///< the rule's formula where it has one (else the tape)
    tape,         ///< always the autodiff tape
};

namespace detail {
/// The loop's scratch tape: a copy of an optimizer gets its own, empty one (a
/// tape cannot be copied, its Vars point at it), so optimizers stay copyable.
template <class S>
struct ScratchTape {
    ad::Tape<S> tape;
    ScratchTape() = default;
    ScratchTape(const ScratchTape&) {}
    ScratchTape& operator=(const ScratchTape&) { return *this; }
};
}  // namespace detail

/// A rule that learns from a look-ahead on the same batch (see the top of the file).
template <class R>
concept LookaheadRule = requires {
    requires R::kLookahead;
};

template <class R>
concept LearnedRule = Real<typename R::Scalar> && StateAggregate<typename R::State> && requires(
    R& r, const R& cr, typename R::State& state, ad::Tape<typename R::Scalar>& tape,
    Eigen::Ref<Vec<typename R::Scalar>>& x_out, const Eigen::Ref<const Vec<typename R::Scalar>>& x,
    const Eigen::Ref<const Vec<typename R::Scalar>>& g, typename R::Scalar* h,
    detail::ObjectiveArchetype<typename R::Scalar>& f, Vec<typename R::Scalar>& v) {
    { R::kName } -> std::convertible_to<std::string_view>;
    { cr.meta_layout() } -> std::convertible_to<const Layout&>;
    { cr.initial_state() } -> std::same_as<typename R::State>;
    { cr.record(tape, state, h) } -> std::same_as<ad::Var<typename R::Scalar>>;
    { state.step } -> std::convertible_to<std::int64_t>;
    requires std::is_base_of_v<Eigen::PlainObjectBase<std::remove_cvref_t<decltype(state.phi)>>,
                               std::remove_cvref_t<decltype(state.phi)>>;
    requires StorageOf < typename std::remove_cvref_t<decltype(state.phi)>::Scalar,
    typename R::Scalar > ;
    requires LookaheadRule<R> || requires {
        cr.observe(state, x, g);
    };
    requires !LookaheadRule<R> || requires {
        { cr.meta_step_due(state) } -> std::same_as<bool>;
        { cr.meta_objective(state, x, g, f, v) } -> std::same_as<typename R::Scalar>;
        cr.move(state, x_out, g);
    };
};

/// A rule whose fused_apply takes this meta-optimizer (see the top of the file).
template <class R, class MetaOpt>
concept FusedStep = requires(const R& rule, typename R::State& state, MetaOpt& meta,
                             Eigen::Ref<Vec<typename R::Scalar>> x,
                             const Eigen::Ref<const Vec<typename R::Scalar>>& g) {
    { rule.fused_apply(state, meta, x, g) } -> std::same_as<bool>;
};

/// How MetaOpt stores its state: its Stored type (Adam<float, bfloat16>), or its Scalar.
template <class MetaOpt>
struct stored_scalar {
    using type = typename MetaOpt::Scalar;
};
template <class MetaOpt>
requires requires {
    typename MetaOpt::Stored;
}
struct stored_scalar<MetaOpt> {
    using type = typename MetaOpt::Stored;
};
template <class MetaOpt>
using stored_scalar_t = typename stored_scalar<MetaOpt>::type;

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
class OnlineMeta {
    using S = typename Rule::Scalar;
    using PhiScalar = typename decltype(std::declval<typename Rule::State&>().phi)::Scalar;
    static_assert(
        std::same_as<PhiScalar, S> || requires(MetaOpt & meta) { meta.begin_step(); },
        "a compact φ takes the meta-step piece by piece (begin_step, apply_piece)");
    static constexpr bool kLookahead = LookaheadRule<Rule>;
    static_assert(
        !requires { requires Rule::kFusedStep; } || FusedStep<Rule, MetaOpt>,
        "the rule declares a fused step that OnlineMeta cannot call");

public:
    using Scalar = S;
    using State = typename Rule::State;
    using Options = typename Rule::Options;
    using MetaOptimizer = MetaOpt;

    /// For a parameter layout (or a size); throws InvalidArgument naming the first
    /// option out of its range.
    explicit OnlineMeta(Layout layout, Options options = {});

    /// Evaluates f at x, learns from it, and moves x; returns the loss at the incoming x.
    template <Objective<Scalar> F>
    Scalar step(Eigen::Ref<Vec<S>> x, F&& f) {
        S loss;
        bool moved = false;
        if (detail::evaluate_checked<S>(name(), options_.on_non_finite, layout_.size(), x, f, grad_,
                                        loss)) {
            if constexpr (kLookahead)
                moved = apply_lookahead(x, grad_, f);
            else
                moved = apply(x, grad_);
        }
        skipped_steps_ += moved ? 0 : 1;
        return loss;
    }

    /// The same for a gradient g the caller already has (not for a look-ahead rule).
    void update(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) requires(!kLookahead) {
        const bool moved =
            detail::gradient_checked<S>(name(), options_.on_non_finite, layout_.size(), x, g)
            && apply(x, g);
        skipped_steps_ += moved ? 0 : 1;
    }

    /// Back to a freshly constructed optimizer, the meta-optimizer included.
    void reset();

    /// The steps and updates skipped on a non-finite value (NonFinitePolicy::skip:
    /// a loss, gradient or hypergradient) since construction or reset(); a count
    /// of this object's calls, not saved.
    std::int64_t skipped_steps() const { return skipped_steps_; }

    std::string_view name() const { return Rule::kName; }
    const State& state() const { return state_; }
    const Options& options() const { return options_; }
    const Layout& layout() const { return layout_; }
    const Rule& rule() const { return rule_; }
    /// Null for a rule without meta-parameters.
    const MetaOpt* meta_optimizer() const { return meta_ ? &*meta_ : nullptr; }

    /// The state, then the meta-optimizer's state.
    void save(std::ostream& out) const;

    /// Replaces the state (φ included) by `state`, with load's checks (shapes,
    /// finite values, the rule's own); all or nothing: throws CorruptState naming
    /// the field and leaves the state as it was.
    void set_state(State state);

    /// Replaces the meta-optimizer's state, as its own set_state does (throws
    /// InvalidArgument for a rule without meta-parameters).
    void set_meta_state(typename MetaOpt::State state) {
        if (!meta_)
            throw InvalidArgument(detail::concat(name(), " has no meta-parameters here"));
        meta_->set_state(std::move(state));
    }

    /// φ's named blocks (README, "A state you build"):
    /// block_view(s.phi, meta_layout().at("b:W1")).
    const Layout& meta_layout() const { return rule_.meta_layout(); }

    /// All or nothing: both states are read before either replaces the current one.
    void load(std::istream& in);

private:
    /// A rule that keeps a copy of part of the state (LODO's permutations) takes
    /// the new state's; it cannot fail.
    void adopt() {
        if constexpr (requires { rule_.adopt(state_); })
            rule_.adopt(state_);
    }

    static Options validated(const Layout& layout, Options options) {
        if (layout.size() == 0)
            throw InvalidArgument("Invalid layout: it has no elements");
        options.validate();
        return options;
    }

    /// Steps 2–4; false, having changed nothing, when the policy skips the step.
    bool apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g);

    template <class F>
    bool apply_lookahead(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g, F& f) {
        if (meta_ && rule_.meta_step_due(state_)) {
            const S q = rule_.meta_objective(state_, x, g, f, meta_gradient_);
            if (!meta_step(meta_gradient_, std::isfinite(q) && detail::all_finite(meta_gradient_)))
                return false;
        }
        rule_.move(state_, x, g);
        return moved(x);
    }

    /// Counts the move, and checks it (see detail::move_overflowed).
    bool moved(const Eigen::Ref<const Vec<S>>& x) {
        ++state_.step;
        if (!detail::all_finite(x))
            throw detail::move_overflowed(name());
        return true;
    }

    /// φ ← MetaOpt(φ, J_Δᵀ v). Where v (`finite` says whether it is) or the
    /// hypergradient is not finite, follows the policy: false having changed
    /// nothing under skip, NonFinite under raise.
    bool meta_step(const Eigen::Ref<const Vec<S>>& v, bool finite);

    /// h = J_Δᵀ v, for the move of the state as it is.
    void compute_hypergradient(const Eigen::Ref<const Vec<S>>& v);

    /// x ← x + Δ(φ; state): the rule's closed form, or its recording.
    void move(Eigen::Ref<Vec<S>> x);

    Layout layout_;
    Options options_;
    Rule rule_;
    std::optional<MetaOpt> meta_;  // none without meta-parameters
    State state_;
    Vec<S> grad_, hypergradient_;
    Vec<S> meta_gradient_;  // a look-ahead rule's v = ∂Q/∂u (empty otherwise)
    detail::ScratchTape<S> scratch_;
    std::int64_t skipped_steps_ = 0;
};

// The members that compile the rule and its meta-step, out of the class body, so
// that an explicit instantiation (SCALTRA_INSTANCE, core/instances.hpp) compiles
// them once for a program: members defined in the class are inline, and a file
// that uses one compiles it whatever the instantiation declarations say.

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
OnlineMeta<Rule, MetaOpt>::OnlineMeta(Layout layout, Options options)
    : layout_(std::move(layout)),
      options_(validated(layout_, std::move(options))),
      rule_(layout_, options_),
      meta_(rule_.meta_layout().size() > 0
                ? std::optional<MetaOpt>(std::in_place, rule_.meta_layout(), options_.meta)
                : std::nullopt),
      state_(rule_.initial_state()),
      grad_(Vec<S>::Zero(layout_.size())),
      hypergradient_(Vec<S>::Zero(rule_.meta_layout().size())),
      meta_gradient_(Vec<S>::Zero(kLookahead ? layout_.size() : 0)) {}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
void OnlineMeta<Rule, MetaOpt>::reset() {
    state_ = rule_.initial_state();
    adopt();
    if (meta_)
        meta_->reset();
    skipped_steps_ = 0;
}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
void OnlineMeta<Rule, MetaOpt>::save(std::ostream& out) const {
    save_state<S>(out, name(), state_);
    if (meta_)
        meta_->save(out);
}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
void OnlineMeta<Rule, MetaOpt>::set_state(State state) {
    check_state<S>(state, state_);
    if constexpr (requires { rule_.check_state(state); })
        rule_.check_state(state);
    state_ = std::move(state);
    adopt();
}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
void OnlineMeta<Rule, MetaOpt>::load(std::istream& in) {
    State loaded = state_;
    load_state<S>(in, name(), loaded);
    if constexpr (requires { rule_.check_state(loaded); })
        rule_.check_state(loaded);  // a state that fits the shapes but not the options
    if (meta_)
        meta_->load(in);  // all or nothing by itself, and the last thing that can fail
    state_ = std::move(loaded);
    adopt();
}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
bool OnlineMeta<Rule, MetaOpt>::apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
    if constexpr (FusedStep<Rule, MetaOpt>) {
        if (state_.step > 0 && meta_ && options_.hypergradient == Hypergradient::closed_form
            && rule_.fused_apply(state_, *meta_, x, g))
            return moved(x);
    }
    if (state_.step > 0 && meta_ && !meta_step(g, true))
        return false;
    rule_.observe(state_, x, g);
    move(x);
    return moved(x);
}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
bool OnlineMeta<Rule, MetaOpt>::meta_step(const Eigen::Ref<const Vec<S>>& v, bool finite) {
    if (finite) {
        compute_hypergradient(v);
        finite = detail::all_finite(hypergradient_);
    }
    if (!finite) {
        if (options_.on_non_finite == NonFinitePolicy::skip)
            return false;
        throw NonFinite(detail::concat(
            name(),
            kLookahead ? ": the meta-gradient is not finite" : ": the hypergradient is not finite",
            "; x and the optimizer state are unchanged"));
    }
    if constexpr (std::same_as<PhiScalar, S>) {
        meta_->update(state_.phi, hypergradient_);
    } else {
        const auto constants = meta_->begin_step();
        detail::for_each_chunk(state_.phi.size(), [&](Index i, Index len) {
            meta_->apply_piece(constants, i, state_.phi.segment(i, len).array(),
                               hypergradient_.segment(i, len).array());
        });
    }
    if (!detail::all_finite(state_.phi))  // before x moves
        throw detail::meta_parameters_diverged(name());
    return true;
}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
void OnlineMeta<Rule, MetaOpt>::compute_hypergradient(const Eigen::Ref<const Vec<S>>& v) {
    if constexpr (requires { rule_.hypergradient(state_, v, hypergradient_); }) {
        if (options_.hypergradient == Hypergradient::closed_form) {
            rule_.hypergradient(state_, v, hypergradient_);
            return;
        }
    }
    ad::Tape<S>& tape = scratch_.tape;
    tape.clear();
    hypergradient_.setZero();
    const ad::Var<S> delta = rule_.record(tape, state_, hypergradient_.data());
    tape.vjp(delta, v);
}

template <LearnedRule Rule, GradientOptimizer MetaOpt>
requires std::same_as<typename Rule::Scalar, typename MetaOpt::Scalar>
void OnlineMeta<Rule, MetaOpt>::move(Eigen::Ref<Vec<S>> x) {
    if constexpr (requires { rule_.move(state_, x); }) {
        if (options_.hypergradient == Hypergradient::closed_form) {
            rule_.move(state_, x);
            return;
        }
    }
    scratch_.tape.clear();
    const auto delta = rule_.record(scratch_.tape, state_, nullptr).value();
    if (!detail::all_finite(delta))
        throw detail::meta_parameters_diverged(name());
    x += delta;
}

}  // namespace scaltra
