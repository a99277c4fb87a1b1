// Elementwise ops: sums and differences with bias broadcasting, scaling,
// products and quotients, and the unary functions. Each records one node and
// defines its backward rule next to its forward.
#pragma once

#include <cmath>
#include <string_view>

#include "tape.hpp"

namespace scaltra::ad {
namespace detail {

template <class S>
[[noreturn]] void shape_error(std::string_view op, const Var<S>& a, const Var<S>& b,
                              std::string_view need) {
    throw DimensionMismatch(scaltra::detail::concat(op, ": shapes ", a.rows(), "x", a.cols(),
                                                    " and ", b.rows(), "x", b.cols(), " ", need));
}

template <class S>
Var<S> same_shape_node(std::string_view op, const Var<S>& a, const Var<S>& b,
                       typename Node<S>::Backward backward) {
    if (a.rows() != b.rows() || a.cols() != b.cols())
        shape_error(op, a, b, "must be equal");
    return a.tape().push(a.rows(), a.cols(), backward, {a, b});
}

enum Broadcast : Index { none = 0, column = 1, row = 2 };

// y = a + s·b, with b of a's shape, a column (a.rows×1, added to every column)
// or a row (1×a.cols, added to every row). param = s, iparam[0] = broadcast.
template <class S>
void add_scaled_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n);
    t.adjoint_in(n, 0) += dy;
    auto db = t.adjoint_in(n, 1);
    const S scale = n.param;
    // Loops over columns rather than Eigen's colwise()/rowwise(), which would
    // evaluate the broadcast operand into a heap temporary.
    for (Index j = 0; j < dy.cols(); ++j) {
        switch (n.iparam[0]) {
            case none:
                db.col(j) += scale * dy.col(j);
                break;
            case column:
                db.col(0) += scale * dy.col(j);
                break;
            default:
                db(0, j) += scale * dy.col(j).sum();
                break;
        }
    }
}

template <class S>
Var<S> add_scaled(std::string_view op, const Var<S>& a, const Var<S>& b, S s) {
    Broadcast mode;
    if (b.rows() == a.rows() && b.cols() == a.cols())
        mode = none;
    else if (b.rows() == a.rows() && b.cols() == 1)
        mode = column;
    else if (b.rows() == 1 && b.cols() == a.cols())
        mode = row;
    else
        shape_error(op, a, b,
                    "must be equal, or the second a column or row to broadcast over the first");
    Tape<S>& t = a.tape();
    Var<S> y = t.push(a.rows(), a.cols(), &add_scaled_backward<S>, {a, b});
    Node<S>& n = t.node(y);
    n.param = s;
    n.iparam[0] = mode;
    auto out = t.value(y);
    auto av = t.value(a);
    auto bv = t.value(b);
    for (Index j = 0; j < out.cols(); ++j) {
        switch (mode) {
            case none:
                out.col(j) = av.col(j) + s * bv.col(j);
                break;
            case column:
                out.col(j) = av.col(j) + s * bv.col(0);
                break;
            default:
                out.col(j) = av.col(j).array() + s * bv(0, j);
                break;
        }
    }
    return y;
}

template <class S>
void mul_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n).array();
    t.adjoint_in(n, 0).array() += dy * t.value_in(n, 1).array();
    t.adjoint_in(n, 1).array() += dy * t.value_in(n, 0).array();
}

template <class S>
void div_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n).array();
    auto b = t.value_in(n, 1).array();
    t.adjoint_in(n, 0).array() += dy / b;
    t.adjoint_in(n, 1).array() -= dy * t.value(n).array() / b;  // y = a/b: ∂y/∂b = −y/b
}

template <class S>
void scale_backward(Tape<S>& t, const Node<S>& n) {
    t.adjoint_in(n, 0) += n.param * t.adjoint(n);
}

// y = s·a with s a 1×1 node: ∂/∂a = s·dy, ∂/∂s = ⟨a, dy⟩.
template <class S>
void scale_by_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n);
    const S s = t.value_in(n, 1)(0, 0);
    t.adjoint_in(n, 0) += s * dy;
    t.adjoint_in(n, 1)(0, 0) += t.value_in(n, 0).cwiseProduct(dy).sum();
}

// A unary function: Op::forward(x) and Op::derivative(x, y), both Eigen arrays.
template <class S, class Op>
void unary_backward(Tape<S>& t, const Node<S>& n) {
    auto x = t.value_in(n, 0).array();
    auto y = t.value(n).array();
    t.adjoint_in(n, 0).array() += t.adjoint(n).array() * Op::derivative(x, y);
}

template <class Op, class S>
Var<S> unary(const Var<S>& a) {
    Tape<S>& t = a.tape();
    Var<S> y = t.push(a.rows(), a.cols(), &unary_backward<S, Op>, {a});
    t.value(y).array() = Op::forward(t.value(a).array());
    return y;
}

// X is an Eigen array expression; T its scalar.
#define SCALTRA_AD_UNARY(Name, forward_expr, derivative_expr)                              \
    struct Name {                                                                          \
        template <class X>                                                                 \
        static auto forward(const X& x) {                                                  \
            using T [[maybe_unused]] = typename X::Scalar;                                 \
            return forward_expr;                                                           \
        }                                                                                  \
        template <class X, class Y>                                                        \
        static auto derivative([[maybe_unused]] const X& x, [[maybe_unused]] const Y& y) { \
            using T [[maybe_unused]] = typename X::Scalar;                                 \
            return derivative_expr;                                                        \
        }                                                                                  \
    };

SCALTRA_AD_UNARY(Exp, x.exp(), y)
SCALTRA_AD_UNARY(Log, x.log(), x.inverse())
SCALTRA_AD_UNARY(Tanh, x.tanh(), T(1) - y.square())
// σ(x) = ½(1 + tanh(x/2)): no overflow for any x.
SCALTRA_AD_UNARY(Sigmoid, T(0.5) * ((T(0.5) * x).tanh() + T(1)), y*(T(1) - y))
SCALTRA_AD_UNARY(Relu, x.max(T(0)), (x > T(0)).template cast<T>())
// log(1 + eˣ) = max(x, 0) + log1p(e^{−|x|}); its derivative is σ(x).
SCALTRA_AD_UNARY(Softplus, x.max(T(0)) + (-x.abs()).exp().log1p(),
                 T(0.5) * ((T(0.5) * x).tanh() + T(1)))
SCALTRA_AD_UNARY(Atan, x.atan(), (T(1) + x.square()).inverse())
SCALTRA_AD_UNARY(Sqrt, x.sqrt(), T(0.5) * y.inverse())
SCALTRA_AD_UNARY(Square, x.square(), T(2) * x)
#undef SCALTRA_AD_UNARY

}  // namespace detail

/// a + b; b may be a column (a.rows×1) or a row (1×a.cols) broadcast over a.
template <class S>
Var<S> add(const Var<S>& a, const Var<S>& b) {
    return detail::add_scaled("add", a, b, S(1));
}
/// a − b, with the same broadcasting as add.
template <class S>
Var<S> sub(const Var<S>& a, const Var<S>& b) {
    return detail::add_scaled("sub", a, b, S(-1));
}
/// s·a.
template <class S>
Var<S> scale(const Var<S>& a, S s) {
    Tape<S>& t = a.tape();
    Var<S> y = t.push(a.rows(), a.cols(), &detail::scale_backward<S>, {a});
    t.node(y).param = s;
    t.value(y) = s * t.value(a);
    return y;
}
/// s·a with s a 1×1 node (a learned scalar scaling a whole matrix).
template <class S>
Var<S> scale(const Var<S>& a, const Var<S>& s) {
    if (s.rows() != 1 || s.cols() != 1)
        detail::shape_error("scale", a, s, "need a 1x1 second operand");
    Var<S> y = a.tape().push(a.rows(), a.cols(), &detail::scale_by_backward<S>, {a, s});
    a.tape().value(y) = s.value()(0, 0) * a.value();
    return y;
}
/// Elementwise a ⊙ b.
template <class S>
Var<S> mul(const Var<S>& a, const Var<S>& b) {
    Var<S> y = detail::same_shape_node("mul", a, b, &detail::mul_backward<S>);
    a.tape().value(y).array() = a.value().array() * b.value().array();
    return y;
}
/// Elementwise a ⊘ b.
template <class S>
Var<S> div(const Var<S>& a, const Var<S>& b) {
    Var<S> y = detail::same_shape_node("div", a, b, &detail::div_backward<S>);
    a.tape().value(y).array() = a.value().array() / b.value().array();
    return y;
}

template <class S>
Var<S> exp(const Var<S>& a) {
    return detail::unary<detail::Exp>(a);
}
template <class S>
Var<S> log(const Var<S>& a) {
    return detail::unary<detail::Log>(a);
}
template <class S>
Var<S> tanh(const Var<S>& a) {
    return detail::unary<detail::Tanh>(a);
}
template <class S>
Var<S> sigmoid(const Var<S>& a) {
    return detail::unary<detail::Sigmoid>(a);
}
template <class S>
Var<S> relu(const Var<S>& a) {
    return detail::unary<detail::Relu>(a);
}
template <class S>
Var<S> softplus(const Var<S>& a) {
    return detail::unary<detail::Softplus>(a);
}
template <class S>
Var<S> atan(const Var<S>& a) {
    return detail::unary<detail::Atan>(a);
}
template <class S>
Var<S> sqrt(const Var<S>& a) {
    return detail::unary<detail::Sqrt>(a);
}
template <class S>
Var<S> square(const Var<S>& a) {
    return detail::unary<detail::Square>(a);
}

template <class S>
Var<S> operator+(const Var<S>& a, const Var<S>& b) {
    return add(a, b);
}
template <class S>
Var<S> operator-(const Var<S>& a, const Var<S>& b) {
    return sub(a, b);
}
template <class S>
Var<S> operator-(const Var<S>& a) {
    return scale(a, S(-1));
}
template <class S>
Var<S> operator*(S s, const Var<S>& a) {
    return scale(a, s);
}
template <class S>
Var<S> operator*(const Var<S>& a, S s) {
    return scale(a, s);
}

}  // namespace scaltra::ad
