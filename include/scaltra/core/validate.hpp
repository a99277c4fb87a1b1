// Range checks for hyperparameters. Messages follow torch.optim's form and name
// the field and its allowed range: "Invalid beta1: must be in [0, 1), got 1".
#pragma once

#include <cmath>
#include <string_view>
#include <type_traits>

#include <Eigen/Core>

#include "bfloat16.hpp"
#include "error.hpp"

namespace scaltra::detail {

enum class Bound { closed, open };

/// Throws InvalidArgument unless lo ≤ v ≤ hi (with open ends as given). NaN always fails.
template <class T>
void require_in(std::string_view name, T v, T lo, Bound lo_bound, T hi, Bound hi_bound) {
    const bool above = lo_bound == Bound::closed ? v >= lo : v > lo;
    const bool below = hi_bound == Bound::closed ? v <= hi : v < hi;
    if (above && below)
        return;
    throw InvalidArgument(concat("Invalid ", name, ": must be in ",
                                 lo_bound == Bound::closed ? "[" : "(", lo, ", ", hi,
                                 hi_bound == Bound::closed ? "]" : ")", ", got ", v));
}

/// v ≥ 0 and finite.
template <class T>
void require_nonnegative(std::string_view name, T v) {
    if (v >= T(0) && std::isfinite(static_cast<double>(v)))
        return;
    throw InvalidArgument(concat("Invalid ", name, ": must be in [0, inf), got ", v));
}

/// v > 0 and finite.
template <class T>
void require_positive(std::string_view name, T v) {
    if (v > T(0) && std::isfinite(static_cast<double>(v)))
        return;
    throw InvalidArgument(concat("Invalid ", name, ": must be in (0, inf), got ", v));
}

/// v ≥ lo and finite.
template <class T>
void require_at_least(std::string_view name, T v, T lo) {
    if (v >= lo && std::isfinite(static_cast<double>(v)))
        return;
    throw InvalidArgument(concat("Invalid ", name, ": must be in [", lo, ", inf), got ", v));
}

/// True when every element of v is finite: one vectorised pass (x − x is 0 for
/// finite x and NaN for ±inf and NaN).
template <class Dense>
bool all_finite(const Eigen::MatrixBase<Dense>& v) {
    if constexpr (std::is_same_v<typename Dense::Scalar, bfloat16>)
        return all_finite(v.template cast<float>());
    else
        return std::isfinite((v.array() - v.array()).sum());
}

/// True when every element of a and of b (of a's size) is finite, in one pass.
template <class DenseA, class DenseB>
bool all_finite(const Eigen::MatrixBase<DenseA>& a, const Eigen::MatrixBase<DenseB>& b) {
    return std::isfinite(((a.array() - a.array()) + (b.array() - b.array())).sum());
}

/// Throws DimensionMismatch unless `actual == expected`.
inline void require_size(std::string_view what, long actual, long expected) {
    if (actual != expected)
        throw DimensionMismatch(concat(what, " has ", actual, " elements, expected ", expected));
}

}  // namespace scaltra::detail
