// The shared step of every gradient-based optimizer (ensmallen's "policy" idea:
// an optimizer is this loop plus its update rule).
//
// `step(x, f)` checks x's size, evaluates f into a preallocated (zeroed) gradient
// buffer, checks the loss and gradient are finite and only then calls the derived
// class's `apply(x, g)`; `update(x, g)` does the same for a gradient the caller
// already has (how the learned optimizers drive their meta-optimizers). Bad input,
// or an objective that throws, leaves x and the state untouched. The state is
// allocated once, at construction, so no step allocates.
//
// A derived optimizer supplies only
//   static constexpr std::string_view kName;
//   static State initial_state(const Layout&, const Options&);
//   bool apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g);  // the rule
// and inherits the constructor `(Layout, Options = {})`, which validates the options.
// apply returns whether x is still finite (a FiniteProbe of each piece it wrote):
// a move from a finite gradient can overflow x only from a diverged state, and the
// step then throws NonFinite (detail::move_overflowed).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <string_view>
#include <utility>

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/layout.hpp"
#include "../core/state_io.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"

namespace scaltra {

/// What a step does when the loss or the gradient is NaN or infinite.
enum class NonFinitePolicy {
    raise,  ///< throw NonFinite, leaving x and the state untouched (default)
    skip,   ///< return the loss without moving x or changing the state
};

namespace detail {

/// A running sum of squares saturated at the largest finite value. Eigen's
/// vectorised float square root (EIGEN_FAST_MATH, its default) turns +inf into
/// NaN, so an accumulator overflowed by a huge but finite gradient (|g| > 1.8e19
/// in float) would put NaN into x. Saturated, the step stays finite, about
/// lr·g/√FLT_MAX, where torch's would be lr·g/∞ = 0; clip such gradients.
template <class Array>
auto saturated(const Array& a) {
    return a.min(std::numeric_limits<typename Array::Scalar>::max());
}

/// The length of for_each_chunk's pieces.
inline constexpr Index kChunk = 512;

/// Calls f(offset, length) over [0, n) in L1-sized pieces (at most kChunk), so
/// that several Eigen expressions on the same piece cost one pass over memory.
template <class F>
void for_each_chunk(Index n, F&& f) {
    for (Index i = 0; i < n; i += kChunk)
        f(i, std::min(kChunk, n - i));
}

/// The error of a step given a non-finite x: the caller's, whatever the
/// NonFinitePolicy (skipping would skip every step from then on).
inline NonFinite non_finite_x(std::string_view name) {
    return NonFinite(concat(name, ": x is not finite; x and the optimizer state are unchanged"));
}

/// The checked evaluation every step starts with: x's size, a finite x, f into
/// the zeroed buffer `grad`, and a finite loss and gradient. Returns false when
/// the step must not move (non-finite under NonFinitePolicy::skip); throws
/// NonFinite under raise. `name` is the optimizer's, for the message.
template <Real S, class F>
bool evaluate_checked(std::string_view name, NonFinitePolicy policy, Index size,
                      Eigen::Ref<Vec<S>> x, F&& f, Vec<S>& grad, S& loss) {
    require_size("x", x.size(), size);
    if (!all_finite(x))
        throw non_finite_x(name);
    const Eigen::Ref<const Vec<S>> x_in(x);
    grad.setZero();  // objectives may accumulate into it, as after torch's zero_grad()
    Eigen::Ref<Vec<S>> grad_ref(grad);
    loss = static_cast<S>(f(x_in, grad_ref));
    if (std::isfinite(loss) && all_finite(grad))
        return true;
    if (policy == NonFinitePolicy::skip)
        return false;
    throw NonFinite(concat(name, ": the objective returned ",
                           std::isfinite(loss) ? "a non-finite gradient" : "a non-finite loss",
                           "; x and the optimizer state are unchanged"));
}

/// The error of a move, from a finite gradient (and finite meta-parameters), that
/// took x out of the floating-point range: a state no run reaches (loaded or set,
/// or grown by a learning rate far too high). Every optimizer checks x after its
/// move; x is lost with the state, whatever the NonFinitePolicy.
inline NonFinite move_overflowed(std::string_view name) {
    return NonFinite(concat(name,
                            ": the move made x non-finite: the optimizer state has diverged; "
                            "x and the state want restoring from a checkpoint"));
}

/// Whether every piece a step wrote is finite, added while the piece is still in
/// L1 (x − x is 0 for a finite x, NaN otherwise, and NaN survives the sum), so the
/// check costs no pass over memory.
template <class S>
struct FiniteProbe {
    S sum = S(0);
    template <class Piece>
    void add(const Piece& piece) {
        sum += (piece - piece).sum();
    }
    bool finite() const { return std::isfinite(sum); }
};

/// The checks of update(x, g): sizes, a finite x and g (see evaluate_checked),
/// both in one pass.
template <Real S>
bool gradient_checked(std::string_view name, NonFinitePolicy policy, Index size,
                      const Eigen::Ref<Vec<S>>& x, const Eigen::Ref<const Vec<S>>& g) {
    require_size("x", x.size(), size);
    require_size("gradient", g.size(), size);
    if (all_finite(x, g))
        return true;
    if (!all_finite(x))
        throw non_finite_x(name);
    if (policy == NonFinitePolicy::skip)
        return false;
    throw NonFinite(concat(name, ": non-finite gradient; x and the optimizer state are unchanged"));
}

}  // namespace detail

template <class Derived, Real S, class StateT, class OptionsT>
requires StateAggregate<StateT>
class OptimizerBase {
public:
    using Scalar = S;
    using State = StateT;
    using Options = OptionsT;

    /// Builds the optimizer for a parameter layout (or a size); throws
    /// InvalidArgument naming the first option out of its range.
    explicit OptimizerBase(Layout layout, Options options = {})
        : layout_(std::move(layout)), options_(std::move(options)) {
        if (layout_.size() == 0)
            throw InvalidArgument("Invalid layout: it has no elements");
        options_.validate();
        grad_ = Vec<S>::Zero(layout_.size());
        state_ = Derived::initial_state(layout_, options_);
    }

    /// Evaluates f at x, then moves x by the derived rule; returns the loss at the incoming x.
    template <Objective<S> F>
    S step(Eigen::Ref<Vec<S>> x, F&& f) {
        S loss;
        if (detail::evaluate_checked<S>(name(), options_.on_non_finite, layout_.size(), x,
                                        std::forward<F>(f), grad_, loss))
            moved(derived().apply(x, grad_));
        else
            ++skipped_steps_;
        return loss;
    }

    /// Moves x by the derived rule for a given gradient g.
    void update(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        if (detail::gradient_checked<S>(name(), options_.on_non_finite, layout_.size(), x, g))
            moved(derived().apply(x, g));
        else
            ++skipped_steps_;
    }

    /// Back to the state of a freshly constructed optimizer.
    void reset() {
        state_ = Derived::initial_state(layout_, options_);
        skipped_steps_ = 0;
    }

    /// The steps and updates skipped on a non-finite value (NonFinitePolicy::skip)
    /// since construction or reset(); a count of this object's calls, not saved.
    std::int64_t skipped_steps() const { return skipped_steps_; }

    std::string_view name() const { return Derived::kName; }
    const State& state() const { return state_; }
    const Options& options() const { return options_; }
    const Layout& layout() const { return layout_; }

    void save(std::ostream& out) const { save_state<S>(out, name(), state_); }
    void load(std::istream& in) { load_state<S>(in, name(), state_); }

    /// Replaces the state by `state`, which must pass load's checks (the shapes of
    /// state(), finite values, a valid step count, ...); all or nothing: throws
    /// CorruptState naming the field and leaves the state as it was.
    void set_state(State state) {
        check_state<S>(state, state_);
        state_ = std::move(state);
    }

protected:
    State state_;

private:
    Derived& derived() { return static_cast<Derived&>(*this); }
    void moved(bool finite) const {
        if (!finite)
            throw detail::move_overflowed(name());
    }

    Layout layout_;
    Options options_;
    Vec<S> grad_;
    std::int64_t skipped_steps_ = 0;
};

}  // namespace scaltra
