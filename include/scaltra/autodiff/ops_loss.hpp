// Losses, each a 1×1 node: softmax cross-entropy with integer labels, mean
// squared error, and the KL divergence between softmax outputs (APO's
// function-space term). Logits are classes × batch (one column per example).
#pragma once

#include <span>
#include <tuple>

#include "ops_elementwise.hpp"

namespace scaltra::ad {
namespace detail {

/// log Σ exp(z), stable (shifted by the maximum).
template <class Column>
auto log_sum_exp(const Column& z) {
    const auto m = z.maxCoeff();
    using std::log;  // and, by argument-dependent lookup, log(Dual)
    return m + log((z.array() - m).exp().sum());
}

// L = (1/B) Σ_j [lse(z_j) − z_{l_j, j}];  ∂L/∂z_j = (softmax(z_j) − e_{l_j}) / B.
template <class S>
void cross_entropy_backward(Tape<S>& t, const Node<S>& n) {
    auto Z = t.value_in(n, 0);
    auto dZ = t.adjoint_in(n, 0);
    const Index* labels = t.integers(n);
    const S scale = t.adjoint(n)(0, 0) / static_cast<S>(Z.cols());
    for (Index j = 0; j < Z.cols(); ++j) {
        const S m = Z.col(j).maxCoeff();
        const S total = (Z.col(j).array() - m).exp().sum();
        dZ.col(j).array() += (scale / total) * (Z.col(j).array() - m).exp();
        dZ(labels[j], j) -= scale;
    }
}

// L = mean((a − b)²);  ∂L/∂a = 2(a − b)/N = −∂L/∂b.
template <class S>
void mse_backward(Tape<S>& t, const Node<S>& n) {
    auto a = t.value_in(n, 0);
    auto b = t.value_in(n, 1);
    const S scale = S(2) * t.adjoint(n)(0, 0) / static_cast<S>(a.size());
    t.adjoint_in(n, 0) += scale * (a - b);
    t.adjoint_in(n, 1) -= scale * (a - b);
}

/// For one column: log p − log q = (t − lse(t)) − (z − lse(z)), p, and KL(p ‖ q).
template <class Column>
auto kl_terms(const Column& t, const Column& z) {
    using S = typename Column::Scalar;
    const S lse_t = log_sum_exp(t), lse_z = log_sum_exp(z);
    const auto log_ratio = (t.array() - lse_t) - (z.array() - lse_z);
    const auto p = (t.array() - lse_t).exp();
    const S kl = (p * log_ratio).sum();
    return std::tuple{log_ratio, p, kl, lse_z};
}

// L = (1/B) Σ_j KL(p_j ‖ q_j), p_j = softmax(t_j), q_j = softmax(z_j):
//   ∂L/∂z_j = (q_j − p_j)/B,   ∂L/∂t_j = p_j ⊙ (log p_j − log q_j − KL_j)/B.
template <class S>
void kl_backward(Tape<S>& t, const Node<S>& n) {
    auto T = t.value_in(n, 0);
    auto Z = t.value_in(n, 1);
    auto dT = t.adjoint_in(n, 0);
    auto dZ = t.adjoint_in(n, 1);
    const S scale = t.adjoint(n)(0, 0) / static_cast<S>(Z.cols());
    for (Index j = 0; j < Z.cols(); ++j) {
        const auto [log_ratio, p, kl, lse_z] = kl_terms(T.col(j), Z.col(j));
        dZ.col(j).array() += scale * ((Z.col(j).array() - lse_z).exp() - p);
        dT.col(j).array() += scale * p * (log_ratio - kl);
    }
}

/// A mean over no elements is 0/0: an empty batch is refused by name.
inline void require_examples(std::string_view op, Index count) {
    if (count == 0)
        throw InvalidArgument(scaltra::detail::concat(op, ": the batch is empty"));
}

}  // namespace detail

/// Mean softmax cross-entropy of logits (classes × batch) against integer labels
/// (one per column, each in [0, classes)).
template <class S>
Var<S> softmax_cross_entropy(const Var<S>& logits, std::span<const Index> labels) {
    const Index classes = logits.rows(), batch = logits.cols();
    detail::require_examples("softmax_cross_entropy", batch);
    if (static_cast<Index>(labels.size()) != batch)
        throw DimensionMismatch(scaltra::detail::concat(
            "softmax_cross_entropy: ", labels.size(), " labels for logits ", classes, "x", batch));
    for (Index l : labels)
        if (l < 0 || l >= classes)
            throw InvalidArgument(scaltra::detail::concat("softmax_cross_entropy: label ", l,
                                                          " outside [0, ", classes, ")"));
    Tape<S>& t = logits.tape();
    Var<S> y = t.push(1, 1, &detail::cross_entropy_backward<S>, {logits});
    t.store_integers(y, labels.data(), batch);
    auto Z = t.value(logits);
    S total = S(0);
    for (Index j = 0; j < batch; ++j)
        total += detail::log_sum_exp(Z.col(j)) - Z(labels[static_cast<std::size_t>(j)], j);
    t.value(y)(0, 0) = total / static_cast<S>(batch);
    return y;
}

/// Mean over all elements of (a − b)².
template <class S>
Var<S> mse(const Var<S>& a, const Var<S>& b) {
    if (a.rows() != b.rows() || a.cols() != b.cols())
        detail::shape_error("mse", a, b, "must be equal");
    detail::require_examples("mse", a.rows() * a.cols());
    Tape<S>& t = a.tape();
    Var<S> y = t.push(1, 1, &detail::mse_backward<S>, {a, b});
    t.value(y)(0, 0) =
        (t.value(a) - t.value(b)).squaredNorm() / static_cast<S>(a.rows() * a.cols());
    return y;
}

/// Mean over columns of KL(softmax(target) ‖ softmax(logits)); both classes × batch.
template <class S>
Var<S> kl_softmax(const Var<S>& target, const Var<S>& logits) {
    if (target.rows() != logits.rows() || target.cols() != logits.cols())
        detail::shape_error("kl_softmax", target, logits, "must be equal");
    detail::require_examples("kl_softmax", logits.cols());
    Tape<S>& t = target.tape();
    Var<S> y = t.push(1, 1, &detail::kl_backward<S>, {target, logits});
    auto T = t.value(target);
    auto Z = t.value(logits);
    S total = S(0);
    for (Index j = 0; j < Z.cols(); ++j)
        total += std::get<2>(detail::kl_terms(T.col(j), Z.col(j)));
    t.value(y)(0, 0) = total / static_cast<S>(Z.cols());
    return y;
}

}  // namespace scaltra::ad
