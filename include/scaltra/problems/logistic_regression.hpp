// L2-regularised logistic regression:
//   f(w) = (1/m) Σᵢ [log(1 + e^{zᵢ}) − yᵢ zᵢ] + (λ/2)‖w‖²,   z = X w,  yᵢ ∈ {0, 1}.
// Strictly convex for λ > 0; its minimiser is computed once, to double precision,
// by Newton's method, so tests know the optimum.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <Eigen/Cholesky>

#include "../core/rng.hpp"
#include "../core/types.hpp"
#include "../core/validate.hpp"

namespace scaltra::problems {

template <Real S>
class LogisticRegression {
public:
    /// Data X (m×d), labels y ∈ {0,1}^m, regularisation λ > 0.
    LogisticRegression(Mat<S> X, Vec<S> y, S lambda)
        : X_(std::move(X)), y_(std::move(y)), lambda_(lambda) {
        detail::require_size("labels", y_.size(), X_.rows());
        detail::require_positive("lambda", lambda_);
        if (X_.size() == 0)
            throw InvalidArgument("Invalid X: logistic regression needs data");
        if (!detail::all_finite(X_))
            throw InvalidArgument("Invalid X: its values must be finite");
        if (((y_.array() != S(0)) && (y_.array() != S(1))).any())
            throw InvalidArgument("Invalid y: labels must be 0 or 1");
        optimum_ = newton_minimiser();
    }

    /// m points with N(0, 1) features; labels drawn from the model with N(0, 1) weights.
    static LogisticRegression synthetic(Index m, Index d, S lambda, std::uint64_t seed) {
        detail::require_positive("m", m);
        detail::require_positive("d", d);
        Rng rng(seed);
        Mat<S> X(m, d);
        for (Index j = 0; j < d; ++j)
            X.col(j) = rng.normal_vector<S>(m);
        const Vec<S> w_true = rng.normal_vector<S>(d);
        Vec<S> y(m);
        for (Index i = 0; i < m; ++i) {
            const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(X.row(i).dot(w_true))));
            y[i] = rng.uniform() < p ? S(1) : S(0);
        }
        return LogisticRegression(std::move(X), std::move(y), lambda);
    }

    Index size() const { return X_.cols(); }

    S operator()(const Eigen::Ref<const Vec<S>>& w, Eigen::Ref<Vec<S>> grad) const {
        detail::require_size("logistic regression w", w.size(), size());
        detail::require_size("logistic regression gradient", grad.size(), size());
        return value_and_gradient<S>(w, grad);
    }

    Vec<S> initial_point() const { return Vec<S>::Zero(size()); }
    const Vec<S>& optimum() const { return optimum_; }
    S optimal_value() const {
        Vec<S> g(size());
        return value_and_gradient<S>(optimum_, g);
    }

private:
    template <class T, class W, class G>
    T value_and_gradient(const W& w, G& grad) const {
        const Vec<T> z = X_.template cast<T>() * w;
        const auto m = static_cast<T>(X_.rows());
        // log(1 + e^z) = max(z, 0) + log1p(e^{−|z|}), stable for large |z|.
        const T data_loss = (z.array().max(T(0)) + (-z.array().abs()).exp().log1p()
                             - y_.template cast<T>().array() * z.array())
                                .sum()
                            / m;
        const Vec<T> residual =
            (T(1) / (T(1) + (-z.array()).exp())).matrix() - y_.template cast<T>();
        grad = X_.template cast<T>().transpose() * residual / m + T(lambda_) * w;
        return data_loss + T(0.5) * T(lambda_) * w.squaredNorm();
    }

    Vec<S> newton_minimiser() const {
        const Mat<double> X = X_.template cast<double>();
        Vec<double> w = Vec<double>::Zero(size()), g(size());
        for (int it = 0; it < 100; ++it) {
            value_and_gradient<double>(w, g);
            if (g.norm() < 1e-13)
                return w.template cast<S>();
            const Vec<double> p = 1.0 / (1.0 + (-(X * w).array()).exp());
            const Vec<double> d = p.array() * (1.0 - p.array());
            Mat<double> H = X.transpose() * d.asDiagonal() * X / static_cast<double>(X.rows());
            H.diagonal().array() += static_cast<double>(lambda_);
            w -= H.ldlt().solve(g);
        }
        throw Error(
            detail::concat("LogisticRegression: Newton's method did not reach the optimum "
                           "in 100 iterations (|g| = ",
                           g.norm(), ")"));
    }

    Mat<S> X_;
    Vec<S> y_;
    S lambda_;
    Vec<S> optimum_;
};

}  // namespace scaltra::problems
