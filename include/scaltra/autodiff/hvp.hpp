// Exact Hessian-vector products, forward over reverse: the computation is
// recorded on a Tape<Dual<S>> whose leaf x carries the direction v in its dual
// parts; the reverse sweep then yields ∇f(x) in the values and H(x)·v in the
// dual parts of x's adjoint. Costs about one gradient evaluation with four
// times the arithmetic (no vectorisation on duals).
#pragma once

#include "dual.hpp"
#include "tape.hpp"

namespace scaltra::ad {

/// f(x), ∇f(x) and H(x)·v, for `record(x_leaf)` recording f on the leaf's tape
/// (a Tape<Dual<S>>) from x as an n×1 leaf and returning the 1×1 result. The
/// tape is cleared first and kept, so repeated calls allocate nothing.
template <class S, class Record>
S hessian_vector_product(Tape<Dual<S>>& tape, Record&& record, const Eigen::Ref<const Vec<S>>& x,
                         const Eigen::Ref<const Vec<S>>& v, Eigen::Ref<Vec<S>> gradient,
                         Eigen::Ref<Vec<S>> hv) {
    const Index n = x.size();
    if (v.size() != n || gradient.size() != n || hv.size() != n)
        throw DimensionMismatch(scaltra::detail::concat("hessian_vector_product: x has ", n,
                                                        " elements, v ", v.size(), ", gradient ",
                                                        gradient.size(), ", hv ", hv.size()));
    tape.clear();
    Var<Dual<S>> leaf = tape.push(n, 1);
    tape.node(leaf).needs_gradient = true;  // a variable, without a temporary to copy from
    auto seeded = tape.value(leaf);
    for (Index i = 0; i < n; ++i)
        seeded(i, 0) = Dual<S>(x[i], v[i]);
    const Var<Dual<S>> root = record(leaf);
    tape.backward(root);
    auto adjoint = tape.adjoint(leaf);
    for (Index i = 0; i < n; ++i) {
        gradient[i] = adjoint(i, 0).v;
        hv[i] = adjoint(i, 0).d;
    }
    return root.value()(0, 0).v;
}

}  // namespace scaltra::ad
