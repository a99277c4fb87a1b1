// Quadratic test problems with known optima:
//   Sphere:                 f(x) = ‖x‖²,                          minimum 0 at 0.
//   IllConditionedQuadratic: f(x) = ½ Σ λᵢ (xᵢ − cᵢ)²,  λᵢ log-spaced from 1 down
//                            to 1/condition, minimum 0 at c.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/rng.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"

namespace scaltra::problems {

template <Real S>
struct Sphere {
    Index n;

    explicit Sphere(Index dimension) : n(dimension) { detail::require_positive("n", n); }

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) const {
        detail::require_size("Sphere x", x.size(), n);
        detail::require_size("Sphere gradient", grad.size(), n);
        grad = S(2) * x;
        return x.squaredNorm();
    }

    Vec<S> initial_point() const { return Vec<S>::Ones(n); }
    Vec<S> optimum() const { return Vec<S>::Zero(n); }
    S optimal_value() const { return S(0); }
};

template <Real S>
struct IllConditionedQuadratic {
    Vec<S> lambda;  ///< the Hessian's diagonal (its eigenvalues)
    Vec<S> centre;  ///< the minimiser c

    /// Eigenvalues 1 … 1/condition log-spaced; centre drawn N(0, 1) from `seed`.
    IllConditionedQuadratic(Index n, double condition, std::uint64_t seed) {
        detail::require_positive("n", n);
        detail::require_at_least("condition", condition, 1.0);
        lambda.resize(n);
        for (Index i = 0; i < n; ++i) {
            const double t = n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1);
            lambda[i] = static_cast<S>(std::pow(condition, -t));
        }
        Rng rng(seed);
        centre = rng.normal_vector<S>(n);
    }

    Index size() const { return lambda.size(); }

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) const {
        detail::require_size("quadratic x", x.size(), size());
        detail::require_size("quadratic gradient", grad.size(), size());
        grad = lambda.cwiseProduct(x - centre);
        return S(0.5) * (x - centre).dot(grad);
    }

    Vec<S> initial_point() const { return Vec<S>::Zero(size()); }
    Vec<S> optimum() const { return centre; }
    S optimal_value() const { return S(0); }
};

}  // namespace scaltra::problems
