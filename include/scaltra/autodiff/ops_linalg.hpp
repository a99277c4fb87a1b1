// Products and reductions: matmul with either operand transposed, sum, mean,
// dot, squared norm, the block-diagonal product by k×k blocks (LODO), and the
// solve with a symmetric positive definite matrix (SCALTRA's per-matrix curvature).
#pragma once

#include <Eigen/Cholesky>

#include "../core/instances.hpp"
#include "ops_elementwise.hpp"

namespace scaltra::ad {
namespace detail {

// y = op(A)·op(B) with op = transpose when iparam[0] (A) / iparam[1] (B) is set.
template <class S>
void matmul_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n);
    auto A = t.value_in(n, 0);
    auto B = t.value_in(n, 1);
    auto dA = t.adjoint_in(n, 0);
    auto dB = t.adjoint_in(n, 1);
    const bool ta = n.iparam[0] != 0, tb = n.iparam[1] != 0;
    auto& gemm = t.gemm();
    const bool want_a = t.wants(n, 0), want_b = t.wants(n, 1);
    // d op(A) = dy·op(B)ᵀ and d op(B) = op(A)ᵀ·dy, transposed back where A or B was.
    if (want_a) {
        if (!ta)
            gemm.multiply(dy, false, B, !tb, dA, true);
        else
            gemm.multiply(B, tb, dy, true, dA, true);
    }
    if (want_b) {
        if (!tb)
            gemm.multiply(A, !ta, dy, false, dB, true);
        else
            gemm.multiply(dy, true, A, ta, dB, true);
    }
}

template <class S>
void sum_backward(Tape<S>& t, const Node<S>& n) {
    t.adjoint_in(n, 0).array() += n.param * t.adjoint(n)(0, 0);  // param: 1 (sum) or 1/size (mean)
}

template <class S>
void dot_backward(Tape<S>& t, const Node<S>& n) {
    const S dy = t.adjoint(n)(0, 0);
    t.adjoint_in(n, 0) += dy * t.value_in(n, 1);
    t.adjoint_in(n, 1) += dy * t.value_in(n, 0);
}

template <class S>
void squared_norm_backward(Tape<S>& t, const Node<S>& n) {
    t.adjoint_in(n, 0) += (S(2) * t.adjoint(n)(0, 0)) * t.value_in(n, 0);
}

// X = A⁻¹B, A symmetric: dB = A⁻¹dX, dA = −(A⁻¹dX)Xᵀ (A⁻ᵀ = A⁻¹). The factor is
// recomputed here rather than kept on the tape.
template <class S>
void solve_spd_backward(Tape<S>& t, const Node<S>& n) {
    const Eigen::LLT<Mat<S>> llt(t.value_in(n, 0));
    const Mat<S> Y = llt.solve(t.adjoint(n));
    if (t.wants(n, 1))
        t.adjoint_in(n, 1) += Y;
    if (t.wants(n, 0))
        t.adjoint_in(n, 0).noalias() -= Y * t.value(n).transpose();
}

// y_j = W_j v_j (or W_jᵀ v_j when iparam[0]) for the k-row slices j of v, with
// W = [W_0 | W_1 | …] of k×h; k = iparam[1].
template <class S>
void block_diag_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n);
    auto W = t.value_in(n, 0);
    auto v = t.value_in(n, 1);
    auto dW = t.adjoint_in(n, 0);
    auto dv = t.adjoint_in(n, 1);
    const Index k = n.iparam[1];
    const bool transposed = n.iparam[0] != 0;
    for (Index j = 0; j * k < v.rows(); ++j) {
        auto Wj = W.middleCols(j * k, k);
        auto dWj = dW.middleCols(j * k, k);
        auto vj = v.middleRows(j * k, k);
        auto dyj = dy.middleRows(j * k, k);
        if (transposed) {
            dWj.noalias() += vj * dyj.transpose();
            dv.middleRows(j * k, k).noalias() += Wj * dyj;
        } else {
            dWj.noalias() += dyj * vj.transpose();
            dv.middleRows(j * k, k).noalias() += Wj.transpose() * dyj;
        }
    }
}

}  // namespace detail

/// op(a)·op(b), where op transposes when the flag is set.
template <class S>
Var<S> matmul(const Var<S>& a, const Var<S>& b, bool transpose_a = false,
              bool transpose_b = false) {
    const Index m = transpose_a ? a.cols() : a.rows();
    const Index ka = transpose_a ? a.rows() : a.cols();
    const Index kb = transpose_b ? b.cols() : b.rows();
    const Index n = transpose_b ? b.rows() : b.cols();
    if (ka != kb)
        detail::shape_error("matmul", a, b,
                            transpose_a || transpose_b
                                ? "(with the transposes asked for) have different inner sizes"
                                : "have different inner sizes");
    Tape<S>& t = a.tape();
    Var<S> y = t.push(m, n, &detail::matmul_backward<S>, {a, b});
    t.node(y).iparam[0] = transpose_a;
    t.node(y).iparam[1] = transpose_b;
    t.gemm().multiply(t.value(a), transpose_a, t.value(b), transpose_b, t.value(y), false);
    return y;
}

/// Σ of all elements (1×1).
template <class S>
Var<S> sum(const Var<S>& a) {
    Tape<S>& t = a.tape();
    Var<S> y = t.push(1, 1, &detail::sum_backward<S>, {a});
    t.node(y).param = S(1);
    t.value(y)(0, 0) = t.value(a).sum();
    return y;
}

/// Mean of all elements (1×1).
template <class S>
Var<S> mean(const Var<S>& a) {
    Tape<S>& t = a.tape();
    Var<S> y = t.push(1, 1, &detail::sum_backward<S>, {a});
    t.node(y).param = S(1) / static_cast<S>(a.rows() * a.cols());
    t.value(y)(0, 0) = t.value(a).mean();
    return y;
}

/// ⟨a, b⟩ = Σ aᵢⱼbᵢⱼ (1×1).
template <class S>
Var<S> dot(const Var<S>& a, const Var<S>& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols())
        detail::shape_error("dot", a, b, "must be equal");
    Tape<S>& t = a.tape();
    Var<S> y = t.push(1, 1, &detail::dot_backward<S>, {a, b});
    t.value(y)(0, 0) = t.value(a).cwiseProduct(t.value(b)).sum();
    return y;
}

/// ‖a‖²_F (1×1).
template <class S>
Var<S> squared_norm(const Var<S>& a) {
    Tape<S>& t = a.tape();
    Var<S> y = t.push(1, 1, &detail::squared_norm_backward<S>, {a});
    t.value(y)(0, 0) = t.value(a).squaredNorm();
    return y;
}

/// A⁻¹B for a symmetric positive definite A (n×n) and B (n×c), by Cholesky.
/// Throws InvalidArgument when A is not positive definite. The gradient treats A
/// as a general matrix, which is exact as long as A is symmetric.
template <class S>
Var<S> solve_spd(const Var<S>& A, const Var<S>& B) {
    if (A.rows() != A.cols() || B.rows() != A.rows())
        detail::shape_error("solve_spd", A, B, "do not fit: A must be n×n and B n×c");
    Tape<S>& t = A.tape();
    const Eigen::LLT<Mat<S>> llt(t.value(A));
    if (llt.info() != Eigen::Success)
        throw InvalidArgument("solve_spd: the matrix is not positive definite");
    Var<S> y = t.push(B.rows(), B.cols(), &detail::solve_spd_backward<S>, {A, B});
    t.value(y) = llt.solve(t.value(B));
    return y;
}

/// blockdiag(W_0, W_1, …)·v, or its transpose's product when `transpose`: W is
/// k×h holding h/k blocks of k×k side by side, v is h×c. Cost 2·h·k·c.
template <class S>
Var<S> block_diag_mul(const Var<S>& W, const Var<S>& v, bool transpose = false) {
    const Index k = W.rows();
    if (W.cols() != v.rows() || v.rows() % k != 0)
        detail::shape_error("block_diag_mul", W, v,
                            "do not fit: W must be k×h holding h/k blocks, v h×c");
    Tape<S>& t = W.tape();
    Var<S> y = t.push(v.rows(), v.cols(), &detail::block_diag_backward<S>, {W, v});
    t.node(y).iparam[0] = transpose;
    t.node(y).iparam[1] = k;
    auto out = t.value(y);
    auto Wv = t.value(W);
    auto vv = t.value(v);
    for (Index j = 0; j * k < vv.rows(); ++j) {
        if (transpose)
            out.middleRows(j * k, k).noalias() =
                Wv.middleCols(j * k, k).transpose() * vv.middleRows(j * k, k);
        else
            out.middleRows(j * k, k).noalias() = Wv.middleCols(j * k, k) * vv.middleRows(j * k, k);
    }
    return y;
}

// The products, for float and double, among the compiled instances (core/instances.hpp):
// each compiles Eigen's matrix product kernels, which 18 files of our build compiled
// again (README, "The learned optimizers compiled once").
#define SCALTRA_AD_PRODUCT_INSTANCES(S)                                         \
    SCALTRA_INSTANCE(Var<S> matmul(const Var<S>&, const Var<S>&, bool, bool))   \
    SCALTRA_INSTANCE(void detail::matmul_backward(Tape<S>&, const Node<S>&))    \
    SCALTRA_INSTANCE(Var<S> solve_spd(const Var<S>&, const Var<S>&))            \
    SCALTRA_INSTANCE(void detail::solve_spd_backward(Tape<S>&, const Node<S>&)) \
    SCALTRA_INSTANCE(Var<S> block_diag_mul(const Var<S>&, const Var<S>&, bool)) \
    SCALTRA_INSTANCE(void detail::block_diag_backward(Tape<S>&, const Node<S>&))
SCALTRA_AD_PRODUCT_INSTANCES(float)
SCALTRA_AD_PRODUCT_INSTANCES(double)
#undef SCALTRA_AD_PRODUCT_INSTANCES

}  // namespace scaltra::ad
