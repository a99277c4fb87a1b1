// Synthetic task generators of the DCO and LODO papers' experiments
// (ALGORITHMS.md), each drawn from an explicit Rng or seed:
//   least squares          min_θ ‖Xθ − y‖², X ∈ ℝ^{rows×cols}, X, y ~ N(0, 1)
//   Beverton–Holt          n⁺ = R₀n / (K + n) + N(0, σ²), R₀, K ~ U(1, 2), n ~ U(0, 10)
//   smooth interpolation   y = a·cos(b·x)·exp(−c·|x|), a, b, c ~ U(0, 1)
//   noisy quadratic bowl   ½(x − c)ᵀH(x − c), eigenvalues of H log-spaced, c ← c + N(0, I)
// Where the paper is silent we chose, and the choice is a parameter: the
// interpolation's x is drawn from U(x_min, x_max), [−5, 5] by default, without
// noise; Beverton–Holt's noise σ defaults to 0.1 as the paper's N(0, 0.1²); the
// bowl's Hessian is rotated by a seeded random orthogonal matrix (so that it is
// not diagonal) and its centre starts at 0.
#pragma once

#include <cmath>
#include <vector>

#include <Eigen/Cholesky>

#include "../core/random_orthogonal.hpp"
#include "../core/rng.hpp"
#include "../core/validate.hpp"

namespace scaltra::data {

/// Inputs and targets as columns (features × examples, outputs × examples).
template <Real S>
struct RegressionSet {
    Mat<S> inputs;
    Mat<S> targets;

    Index size() const { return inputs.cols(); }
};

/// A regression task: training and validation sets drawn from one function.
template <Real S>
struct RegressionTask {
    RegressionSet<S> train, validation;
    std::vector<S> parameters;  ///< the function's drawn parameters (R₀, K or a, b, c)
};

/// min_θ ‖Xθ − y‖² as an Objective, with its exact minimiser; also a meta-training
/// task (a SecondOrderTask, core/concepts.hpp) whose training and validation
/// losses are both this loss, started from θ₁ = `start` (0 from the generators).
template <Real S>
struct LeastSquaresTask {
    Mat<S> X;
    Vec<S> y;
    Vec<S> start;  ///< θ₁, the fixed initial point of meta-training

    S operator()(const Eigen::Ref<const Vec<S>>& theta, Eigen::Ref<Vec<S>> grad) const {
        scaltra::detail::require_size("least-squares θ", theta.size(), X.cols());
        scaltra::detail::require_size("least-squares gradient", grad.size(), X.cols());
        const Vec<S> residual = X * theta - y;
        grad.noalias() = S(2) * X.transpose() * residual;
        return residual.squaredNorm();
    }

    S train_loss(const Eigen::Ref<const Vec<S>>& theta, Eigen::Ref<Vec<S>> grad) const {
        return (*this)(theta, grad);
    }
    S validation_loss(const Eigen::Ref<const Vec<S>>& theta, Eigen::Ref<Vec<S>> grad) const {
        return (*this)(theta, grad);
    }
    const Vec<S>& initial_point() const { return start; }

    /// hv = 2XᵀX·v, the loss's Hessian times v.
    void hessian_vector_product(const Eigen::Ref<const Vec<S>>&, const Eigen::Ref<const Vec<S>>& v,
                                Eigen::Ref<Vec<S>> hv) const {
        scaltra::detail::require_size("least-squares direction", v.size(), X.cols());
        scaltra::detail::require_size("least-squares Hessian-vector product", hv.size(), X.cols());
        const Vec<S> Xv = X * v;
        hv.noalias() = S(2) * X.transpose() * Xv;
    }

    /// The minimiser (XᵀX)⁻¹Xᵀy, solved in double.
    Vec<S> solution() const {
        const Mat<double> Xd = X.template cast<double>();
        return (Xd.transpose() * Xd)
            .ldlt()
            .solve(Xd.transpose() * y.template cast<double>())
            .template cast<S>();
    }
};

template <Real S>
LeastSquaresTask<S> least_squares_task(Rng& rng, Index rows = 100, Index cols = 100) {
    scaltra::detail::require_positive("rows", rows);
    scaltra::detail::require_positive("cols", cols);
    LeastSquaresTask<S> task{Mat<S>(rows, cols), Vec<S>(rows), Vec<S>::Zero(cols)};
    for (Index i = 0; i < task.X.size(); ++i)
        task.X(i) = static_cast<S>(rng.normal());
    task.y = rng.normal_vector<S>(rows);
    return task;
}

/// Theorem 1's shifted task ‖Xθ − (y + XΔ)‖², Δ ~ N(0, I): X and y shared by all
/// tasks, the minimiser θ′ + Δ (θ′ that of ‖Xθ − y‖²), the same optimal loss.
template <Real S>
LeastSquaresTask<S> shifted_least_squares_task(Rng& rng, const Eigen::Ref<const Mat<S>>& X,
                                               const Eigen::Ref<const Vec<S>>& y) {
    scaltra::detail::require_size("shifted least-squares y", y.size(), X.rows());
    const Vec<S> shift = rng.normal_vector<S>(X.cols());
    return {X, y + X * shift, Vec<S>::Zero(X.cols())};
}

namespace detail {

template <Real S, class F>
RegressionSet<S> sample(Rng& rng, Index count, double lo, double hi, F&& f) {
    RegressionSet<S> set{Mat<S>(1, count), Mat<S>(1, count)};
    for (Index j = 0; j < count; ++j) {
        const double x = rng.uniform(lo, hi);
        set.inputs(0, j) = static_cast<S>(x);
        set.targets(0, j) = static_cast<S>(f(x));
    }
    return set;
}

}  // namespace detail

/// Beverton–Holt system identification: predict n⁺ from n.
template <Real S>
RegressionTask<S> beverton_holt_task(Rng& rng, Index train = 500, Index validation = 100,
                                     double noise = 0.1) {
    scaltra::detail::require_positive("train", train);
    scaltra::detail::require_positive("validation", validation);
    scaltra::detail::require_nonnegative("noise", noise);
    const double R0 = rng.uniform(1.0, 2.0), K = rng.uniform(1.0, 2.0);
    auto f = [&](double n) {
        return R0 * n / (K + n) + noise * rng.normal();
    };
    RegressionTask<S> task;
    task.train = detail::sample<S>(rng, train, 0.0, 10.0, f);
    task.validation = detail::sample<S>(rng, validation, 0.0, 10.0, f);
    task.parameters = {static_cast<S>(R0), static_cast<S>(K)};
    return task;
}

/// Smooth interpolation of a·cos(b·x)·exp(−c·|x|).
template <Real S>
RegressionTask<S> smooth_interpolation_task(Rng& rng, Index train = 500, Index validation = 100,
                                            double x_min = -5.0, double x_max = 5.0) {
    scaltra::detail::require_positive("train", train);
    scaltra::detail::require_positive("validation", validation);
    if (!(x_min < x_max) || !std::isfinite(x_max - x_min))
        throw InvalidArgument(scaltra::detail::concat("Invalid x range: [", x_min, ", ", x_max,
                                                      "] must be finite and not empty"));
    const double a = rng.uniform(), b = rng.uniform(), c = rng.uniform();
    auto f = [&](double x) {
        return a * std::cos(b * x) * std::exp(-c * std::abs(x));
    };
    RegressionTask<S> task;
    task.train = detail::sample<S>(rng, train, x_min, x_max, f);
    task.validation = detail::sample<S>(rng, validation, x_min, x_max, f);
    task.parameters = {static_cast<S>(a), static_cast<S>(b), static_cast<S>(c)};
    return task;
}

struct NoisyQuadraticOptions {
    double min_eigenvalue = 1e-3;
    double max_eigenvalue = 1.0;
    double drift = 1.0;  ///< standard deviation of the centre's random-walk step
    bool rotate = true;  ///< H = Q diag(λ) Qᵀ with Q Haar-random; false: H = diag(λ)

    void validate() const {
        scaltra::detail::require_positive("min_eigenvalue", min_eigenvalue);
        if (!(max_eigenvalue >= min_eigenvalue) || !std::isfinite(max_eigenvalue))
            throw InvalidArgument(scaltra::detail::concat(
                "Invalid max_eigenvalue: must be finite and ≥ min_eigenvalue (", min_eigenvalue,
                "), got ", max_eigenvalue));
        scaltra::detail::require_nonnegative("drift", drift);
    }
};

/// The noisy quadratic bowl of the LODO paper: f(x) = ½(x − c)ᵀH(x − c), the
/// eigenvalues of H log-spaced from min to max, and a centre c that takes a
/// random-walk step c ← c + drift·N(0, I) whenever drift() is called (once per
/// optimizer step: the optimizer chases a moving minimum with a fixed Hessian).
template <Real S>
class NoisyQuadraticBowl {
public:
    NoisyQuadraticBowl(Index n, std::uint64_t seed, NoisyQuadraticOptions options = {})
        : options_(options), rng_(seed) {
        scaltra::detail::require_positive("n", n);
        options_.validate();
        eigenvalues_.resize(n);
        const double lo = std::log(options_.min_eigenvalue), hi = std::log(options_.max_eigenvalue);
        for (Index i = 0; i < n; ++i)
            eigenvalues_[i] = std::exp(
                n == 1 ? hi : lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(n - 1));
        Mat<double> Q = Mat<double>::Identity(n, n);
        if (options_.rotate)
            Q = random_orthogonal(rng_, n);
        const Mat<double> H = Q * eigenvalues_.asDiagonal() * Q.transpose();
        hessian_ = (0.5 * (H + H.transpose())).template cast<S>();  // exactly symmetric
        centre_ = Vec<S>::Zero(n);
        shifted_.resize(n);
    }

    Index size() const { return centre_.size(); }
    const Mat<S>& hessian() const { return hessian_; }
    const Vec<double>& eigenvalues() const { return eigenvalues_; }
    const Vec<S>& centre() const { return centre_; }

    /// f(x) = ½(x − c)ᵀH(x − c), gradient H(x − c).
    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) {
        scaltra::detail::require_size("bowl x", x.size(), size());
        scaltra::detail::require_size("bowl gradient", grad.size(), size());
        shifted_ = x - centre_;
        grad.noalias() = hessian_ * shifted_;
        return S(0.5) * shifted_.dot(grad);
    }

    /// One random-walk step of the centre.
    void drift() {
        for (Index i = 0; i < size(); ++i)
            centre_[i] += static_cast<S>(options_.drift * rng_.normal());
    }

    /// ‖I − G H‖_F / √n: how far G is from H⁻¹ (LODO's inverse-Hessian error;
    /// ≈ 0.883 for G = I with the default eigenvalues and n = 100).
    double inverse_hessian_error(const Eigen::Ref<const Mat<S>>& G) const {
        if (G.rows() != size() || G.cols() != size())
            throw DimensionMismatch(scaltra::detail::concat("inverse_hessian_error: G is ",
                                                            G.rows(), "x", G.cols(), ", need ",
                                                            size(), "x", size()));
        const Mat<double> E = Mat<double>::Identity(size(), size())
                              - G.template cast<double>() * hessian_.template cast<double>();
        return E.norm() / std::sqrt(static_cast<double>(size()));
    }

private:
    NoisyQuadraticOptions options_;
    Rng rng_;
    Vec<double> eigenvalues_;
    Mat<S> hessian_;
    Vec<S> centre_;
    Vec<S> shifted_;
};

}  // namespace scaltra::data
