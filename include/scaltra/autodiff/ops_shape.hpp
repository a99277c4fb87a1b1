// Shape ops: slice, reshape, concatenation, and gathering rows by index
// (a permutation, for LODO's fixed permutations).
#pragma once

#include <span>

#include "ops_elementwise.hpp"

namespace scaltra::ad {
namespace detail {

// y = a.block(iparam[0], iparam[1], rows, cols).
template <class S>
void slice_backward(Tape<S>& t, const Node<S>& n) {
    t.adjoint_in(n, 0).block(n.iparam[0], n.iparam[1], n.rows, n.cols) += t.adjoint(n);
}

template <class S>
void reshape_backward(Tape<S>& t, const Node<S>& n) {
    auto da = t.adjoint_in(n, 0);
    Eigen::Map<Mat<S>>(da.data(), n.rows, n.cols) += t.adjoint(n);
}

// y = [a; b] (iparam[0] = 0) or [a, b] (iparam[0] = 1).
template <class S>
void concat_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n);
    auto da = t.adjoint_in(n, 0);
    auto db = t.adjoint_in(n, 1);
    if (n.iparam[0] == 0) {
        da += dy.topRows(da.rows());
        db += dy.bottomRows(db.rows());
    } else {
        da += dy.leftCols(da.cols());
        db += dy.rightCols(db.cols());
    }
}

// y.row(i) = a.row(index[i]); the indices live in the tape's integer arena.
template <class S>
void gather_backward(Tape<S>& t, const Node<S>& n) {
    auto dy = t.adjoint(n);
    auto da = t.adjoint_in(n, 0);
    const Index* index = t.integers(n);
    for (Index i = 0; i < n.rows; ++i)
        da.row(index[i]) += dy.row(i);
}

}  // namespace detail

/// The rows×cols block of a starting at (row, col).
template <class S>
Var<S> slice(const Var<S>& a, Index row, Index col, Index rows, Index cols) {
    if (row < 0 || col < 0 || rows <= 0 || cols <= 0 || row + rows > a.rows()
        || col + cols > a.cols())
        throw DimensionMismatch(scaltra::detail::concat("slice: block ", rows, "x", cols, " at (",
                                                        row, ", ", col, ") does not fit ", a.rows(),
                                                        "x", a.cols()));
    Tape<S>& t = a.tape();
    Var<S> y = t.push(rows, cols, &detail::slice_backward<S>, {a});
    t.node(y).iparam[0] = row;
    t.node(y).iparam[1] = col;
    t.value(y) = t.value(a).block(row, col, rows, cols);
    return y;
}

/// The same elements (column-major) as a rows×cols matrix.
template <class S>
Var<S> reshape(const Var<S>& a, Index rows, Index cols) {
    if (rows <= 0 || cols <= 0 || rows * cols != a.rows() * a.cols())
        throw DimensionMismatch(scaltra::detail::concat("reshape: ", a.rows(), "x", a.cols(),
                                                        " cannot become ", rows, "x", cols));
    Tape<S>& t = a.tape();
    Var<S> y = t.push(rows, cols, &detail::reshape_backward<S>, {a});
    auto av = t.value(a);
    t.value(y) = Eigen::Map<const Mat<S>>(av.data(), rows, cols);
    return y;
}

/// [a; b]: b's rows below a's (same column count).
template <class S>
Var<S> concat_rows(const Var<S>& a, const Var<S>& b) {
    if (a.cols() != b.cols())
        detail::shape_error("concat_rows", a, b, "must have the same number of columns");
    Tape<S>& t = a.tape();
    Var<S> y = t.push(a.rows() + b.rows(), a.cols(), &detail::concat_backward<S>, {a, b});
    t.value(y) << t.value(a), t.value(b);
    return y;
}

/// [a, b]: b's columns right of a's (same row count).
template <class S>
Var<S> concat_cols(const Var<S>& a, const Var<S>& b) {
    if (a.rows() != b.rows())
        detail::shape_error("concat_cols", a, b, "must have the same number of rows");
    Tape<S>& t = a.tape();
    Var<S> y = t.push(a.rows(), a.cols() + b.cols(), &detail::concat_backward<S>, {a, b});
    t.node(y).iparam[0] = 1;
    t.value(y) << t.value(a), t.value(b);
    return y;
}

/// Rows of a picked by index: y.row(i) = a.row(index[i]). With a permutation of
/// 0..rows−1 this is the permutation P·a. The indices are copied into the tape.
template <class S>
Var<S> gather_rows(const Var<S>& a, std::span<const Index> index) {
    if (index.empty())
        throw DimensionMismatch("gather_rows: no indices");
    for (Index i : index)
        if (i < 0 || i >= a.rows())
            throw InvalidArgument(scaltra::detail::concat("gather_rows: index ", i, " outside the ",
                                                          a.rows(), " rows"));
    Tape<S>& t = a.tape();
    Var<S> y = t.push(static_cast<Index>(index.size()), a.cols(), &detail::gather_backward<S>, {a});
    t.store_integers(y, index.data(), static_cast<Index>(index.size()));
    auto out = t.value(y);
    auto av = t.value(a);
    for (Index i = 0; i < out.rows(); ++i)
        out.row(i) = av.row(index[static_cast<std::size_t>(i)]);
    return y;
}

}  // namespace scaltra::ad
