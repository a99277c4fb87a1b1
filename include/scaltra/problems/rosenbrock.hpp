// The Rosenbrock function (Rosenbrock, 1960), 2-D and its n-D chained form:
//   f(x) = Σ_{i<n−1} b(x_{i+1} − x_i²)² + (a − x_i)²,
// minimum 0 at (a, a²) in 2-D and at (1, …, 1) in n-D, which needs a = 1.
#pragma once

#include <cmath>

#include "../core/types.hpp"
#include "../core/validate.hpp"

namespace scaltra::problems {

template <Real S>
struct Rosenbrock {
    Index n = 2;
    S a = S(1);
    S b = S(100);

    explicit Rosenbrock(Index dimension = 2, S a_ = S(1), S b_ = S(100))
        : n(dimension), a(a_), b(b_) {
        if (n < 2)
            throw InvalidArgument(detail::concat("Invalid n: must be at least 2, got ", n));
        if (!std::isfinite(a))
            throw InvalidArgument(detail::concat("Invalid a: must be finite, got ", a));
        if (n > 2 && a != S(1))
            throw InvalidArgument(detail::concat(
                "Invalid a: the n-D Rosenbrock function (n > 2) needs a = 1, got ", a));
        detail::require_positive("b", b);
    }

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) const {
        detail::require_size("Rosenbrock x", x.size(), n);
        detail::require_size("Rosenbrock gradient", grad.size(), n);
        S f = S(0);
        grad.setZero();
        for (Index i = 0; i + 1 < n; ++i) {
            const S r = x[i + 1] - x[i] * x[i];
            const S s = a - x[i];
            f += b * r * r + s * s;
            grad[i] += -S(4) * b * r * x[i] - S(2) * s;
            grad[i + 1] += S(2) * b * r;
        }
        return f;
    }

    /// The classic start (−1.2, 1, −1.2, 1, …).
    Vec<S> initial_point() const {
        Vec<S> x(n);
        for (Index i = 0; i < n; ++i)
            x[i] = i % 2 == 0 ? S(-1.2) : S(1);
        return x;
    }

    /// The minimiser: (a, a²) in 2-D, all ones in n-D.
    Vec<S> optimum() const {
        if (n == 2)
            return Vec<S>{{a, a * a}};
        return Vec<S>::Ones(n);
    }

    S optimal_value() const { return S(0); }
};

}  // namespace scaltra::problems
