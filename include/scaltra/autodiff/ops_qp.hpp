// The differentiable unconstrained quadratic program (the DCO layer; research-
// apo-dco.md §4.2, OptNet's implicit differentiation):
//   y* = argmin_y ½yᵀQy + qᵀy = −Q⁻¹q,   Q symmetric positive definite.
// Backward, from the KKT condition Qy* + q = 0, for an upstream v = ∂ℓ/∂y*:
//   d_y = −Q⁻¹v,   ∂ℓ/∂q = d_y,   ∂ℓ/∂Q = ½(d_y y*ᵀ + y* d_yᵀ)
// (the symmetrised form: Q is read as a symmetric matrix, its lower triangle by
// the Cholesky factorisation). With q of c columns the c programs share Q and
// their ∂Q add up. The diagonal form Q = diag(d) costs O(n) per column:
//   y* = −q ⊘ d,   d_y = −v ⊘ d,   ∂ℓ/∂d = Σ_columns d_y ⊙ y*.
// A DCO update rule is Q(φ, state) and q(φ, state) recorded on the tape, then
// one of these (README, "DCO": a rule of your own).
#pragma once

#include <Eigen/Cholesky>

#include "ops_elementwise.hpp"

namespace scaltra::ad {
namespace detail {

template <class S>
void qp_solve_backward(Tape<S>& t, const Node<S>& n) {
    const Eigen::LLT<Mat<S>> llt(t.value_in(n, 0));  // recomputed, not kept on the tape
    const Mat<S> dy = -llt.solve(t.adjoint(n));
    if (t.wants(n, 1))
        t.adjoint_in(n, 1) += dy;
    if (t.wants(n, 0)) {
        const Mat<S> outer = dy * t.value(n).transpose();
        t.adjoint_in(n, 0) += S(0.5) * (outer + outer.transpose());
    }
}

template <class S>
void qp_solve_diagonal_backward(Tape<S>& t, const Node<S>& n) {
    auto d = t.value_in(n, 0);
    auto y = t.value(n);
    auto v = t.adjoint(n);
    const bool want_d = t.wants(n, 0), want_q = t.wants(n, 1);
    auto dd = t.adjoint_in(n, 0);
    auto dq = t.adjoint_in(n, 1);
    for (Index j = 0; j < y.cols(); ++j)
        for (Index i = 0; i < y.rows(); ++i) {
            const S dy = -v(i, j) / d(i, 0);
            if (want_q)
                dq(i, j) += dy;
            if (want_d)
                dd(i, 0) += dy * y(i, j);
        }
}

}  // namespace detail

/// y* = argmin_y ½yᵀQy + qᵀy = −Q⁻¹q, for a symmetric positive definite Q (n×n)
/// and q (n×c), by Cholesky; differentiable in Q and q (the top of the file).
/// Throws InvalidArgument when Q is not positive definite.
template <class S>
Var<S> qp_solve(const Var<S>& Q, const Var<S>& q) {
    if (Q.rows() != Q.cols() || q.rows() != Q.rows())
        detail::shape_error("qp_solve", Q, q, "do not fit: Q must be n×n and q n×c");
    Tape<S>& t = Q.tape();
    const Eigen::LLT<Mat<S>> llt(t.value(Q));
    if (llt.info() != Eigen::Success)
        throw InvalidArgument(
            "qp_solve: Q is not positive definite, so the quadratic program has no unique "
            "minimiser");
    Var<S> y = t.push(q.rows(), q.cols(), &detail::qp_solve_backward<S>, {Q, q});
    t.value(y) = -llt.solve(t.value(q));
    return y;
}

/// The same program with Q = diag(d), d an n×1 column of positive numbers.
/// Throws InvalidArgument when an element of d is not positive.
template <class S>
Var<S> qp_solve_diagonal(const Var<S>& d, const Var<S>& q) {
    if (d.cols() != 1 || q.rows() != d.rows())
        detail::shape_error("qp_solve_diagonal", d, q, "do not fit: d must be n×1 and q n×c");
    Tape<S>& t = d.tape();
    const auto dv = t.value(d);
    for (Index i = 0; i < dv.rows(); ++i)
        if (!(dv(i, 0) > S(0)))
            throw InvalidArgument(scaltra::detail::concat(
                "qp_solve_diagonal: Q = diag(d) must be positive definite, but d[", i,
                "] = ", dv(i, 0)));
    Var<S> y = t.push(q.rows(), q.cols(), &detail::qp_solve_diagonal_backward<S>, {d, q});
    auto out = t.value(y);
    auto qv = t.value(q);
    auto dval = t.value(d);  // re-read: push may have moved the arena
    for (Index j = 0; j < out.cols(); ++j)
        out.col(j) = -qv.col(j).cwiseQuotient(dval.col(0));
    return y;
}

}  // namespace scaltra::ad
