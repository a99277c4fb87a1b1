// Gradient clipping in front of any optimizer, as optax's
// `chain(clip_by_global_norm(c), adam(...))` or torch's clip_grad_norm_ before
// `opt.step()`:
//
//     auto opt = scaltra::clip_by_global_norm(1.0, scaltra::Adam<float>(n, {.lr = 1e-3f}));
//     opt.step(x, f);   // Adam sees f's gradient, clipped
//
// by global norm   g ← g · c/‖g‖₂ where ‖g‖₂ > c (optax's rule; ‖g‖₂ over the
//                  whole vector, computed without overflow)
// by value         g ← clamp(g, −c, c) elementwise
//
// Every gradient the optimizer evaluates is clipped, a learned optimizer's
// look-ahead evaluations included; APO's function-space term (a ModelObjective's
// discrepancy) is passed through unclipped, being the meta-objective's and not
// the loss's. A gradient that holds NaN or ±inf is passed on untouched, so the
// optimizer's NonFinitePolicy still sees it (a clip would turn inf into a finite
// value or NaN). Clipped<Opt> is an Optimizer (a GradientOptimizer when Opt is)
// whose name, state, save/load and reset are Opt's: clipping has no state, so a
// checkpoint of Clipped<Adam> and one of Adam are the same file.
#pragma once

#include <cmath>
#include <cstdint>
#include <istream>
#include <limits>
#include <ostream>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../core/concepts.hpp"
#include "../core/error.hpp"
#include "../core/layout.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"

namespace scaltra {

/// How Clipped limits a gradient: its global ℓ₂ norm or each element, to `threshold`.
struct Clip {
    enum class Kind { global_norm, value };
    Kind kind = Kind::global_norm;
    double threshold = 1.0;  ///< c > 0 (∞ leaves every gradient as it is)

    static Clip by_global_norm(double max_norm) { return {Kind::global_norm, max_norm}; }
    static Clip by_value(double max_abs) { return {Kind::value, max_abs}; }

    /// Throws InvalidArgument unless threshold ∈ (0, ∞], also once rounded to S
    /// (1e-50 is 0 as a float, and would zero every gradient).
    template <Real S = double>
    void validate() const {
        const char* field = kind == Kind::global_norm ? "max_norm" : "max_abs";
        detail::require_in(field, threshold, 0.0, detail::Bound::open,
                           std::numeric_limits<double>::infinity(), detail::Bound::closed);
        if (!(static_cast<S>(threshold) > S(0)))
            throw InvalidArgument(detail::concat("Invalid ", field, ": ", threshold,
                                                 " rounds to 0 in the optimizer's scalar"));
    }

    /// Clips g in place (see the top of this file); a non-finite g is left as it
    /// is. Throws InvalidArgument for a threshold validate<S> refuses.
    template <Real S>
    void apply(Eigen::Ref<Vec<S>> g) const {
        validate<S>();
        const S c = static_cast<S>(threshold);
        if (kind == Kind::value) {
            if (detail::all_finite(g))
                g = g.cwiseMax(-c).cwiseMin(c);
            return;
        }
        const S squared = g.squaredNorm();  // finite ⇔ g finite and the sum did not overflow
        if (!std::isfinite(squared) && !detail::all_finite(g))
            return;
        const S norm = std::isfinite(squared) ? std::sqrt(squared) : g.stableNorm();
        if (norm > c)
            g *= c / norm;
    }
};

namespace detail {
/// f with its gradient clipped: what Clipped hands its optimizer.
template <class F, Real S>
struct ClippedObjective {
    F& f;
    const Clip& clip;

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) {
        const S loss = static_cast<S>(f(x, grad));
        clip.apply<S>(grad);
        return loss;
    }
    S discrepancy(const Eigen::Ref<const Vec<S>>& u, const Eigen::Ref<const Vec<S>>& w,
                  Discrepancy rho, Eigen::Ref<Vec<S>> grad) requires ModelObjective<F, S> {
        return static_cast<S>(f.discrepancy(u, w, rho, grad));
    }
};
}  // namespace detail

/// An optimizer that sees every gradient clipped (see the top of this file).
template <Optimizer Opt>
class Clipped {
public:
    using Scalar = typename Opt::Scalar;
    using State = std::remove_cvref_t<decltype(std::declval<const Opt&>().state())>;

    /// Throws InvalidArgument for a threshold that is not positive.
    Clipped(Clip clip, Opt optimizer) : clip_(validated(clip)), inner_(std::move(optimizer)) {
        clipped_ = Vec<Scalar>::Zero(inner_.layout().size());
    }

    template <Objective<Scalar> F>
    Scalar step(Eigen::Ref<Vec<Scalar>> x, F&& f) {
        detail::ClippedObjective<std::remove_reference_t<F>, Scalar> clipped{f, clip_};
        return inner_.step(x, clipped);
    }

    /// The optimizer's update with g clipped (g itself is not changed).
    void update(Eigen::Ref<Vec<Scalar>> x, const Eigen::Ref<const Vec<Scalar>>& g)
        requires GradientOptimizer<Opt> {
        detail::require_size("gradient", g.size(), clipped_.size());
        clipped_ = g;
        clip_.apply<Scalar>(clipped_);
        inner_.update(x, clipped_);
    }

    void reset() { inner_.reset(); }
    std::string_view name() const { return inner_.name(); }
    const State& state() const { return inner_.state(); }
    void save(std::ostream& out) const { inner_.save(out); }
    void load(std::istream& in) { inner_.load(in); }
    std::int64_t skipped_steps() const { return inner_.skipped_steps(); }
    const Layout& layout() const { return inner_.layout(); }

    const Clip& clip() const { return clip_; }
    const Opt& inner() const { return inner_; }

private:
    static Clip validated(Clip clip) {
        clip.template validate<Scalar>();
        return clip;
    }

    Clip clip_;
    Opt inner_;
    Vec<Scalar> clipped_;  // update's copy of g
};

/// `optimizer` with every gradient clipped to global ℓ₂ norm `max_norm`.
template <Optimizer Opt>
Clipped<Opt> clip_by_global_norm(double max_norm, Opt optimizer) {
    return Clipped<Opt>(Clip::by_global_norm(max_norm), std::move(optimizer));
}

/// `optimizer` with every gradient element clipped to [−max_abs, max_abs].
template <Optimizer Opt>
Clipped<Opt> clip_by_value(double max_abs, Opt optimizer) {
    return Clipped<Opt>(Clip::by_value(max_abs), std::move(optimizer));
}

}  // namespace scaltra
