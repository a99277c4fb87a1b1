// Dual numbers a + b·ε (ε² = 0) for forward-mode differentiation. A Tape<Dual<S>>
// differentiates in reverse what the duals differentiate forward, which gives
// exact Hessian-vector products (forward-over-reverse; see hvp.hpp).
#pragma once

#include <cmath>
#include <ostream>
#include <type_traits>

#include <Eigen/Core>

namespace scaltra::ad {

template <class S>
struct Dual {
    S v = S(0);  ///< value
    S d = S(0);  ///< derivative along the seeded direction

    Dual() = default;
    template <class A>
    requires std::is_arithmetic_v<A> Dual(A value)
        : v(static_cast<S>(value)) {}  // NOLINT: numbers convert
    Dual(S value, S derivative) : v(value), d(derivative) {}

    Dual& operator+=(const Dual& o) { return *this = *this + o; }
    Dual& operator-=(const Dual& o) { return *this = *this - o; }
    Dual& operator*=(const Dual& o) { return *this = *this * o; }
    Dual& operator/=(const Dual& o) { return *this = *this / o; }

    friend Dual operator+(const Dual& a, const Dual& b) { return {a.v + b.v, a.d + b.d}; }
    friend Dual operator-(const Dual& a, const Dual& b) { return {a.v - b.v, a.d - b.d}; }
    friend Dual operator-(const Dual& a) { return {-a.v, -a.d}; }
    friend Dual operator*(const Dual& a, const Dual& b) {
        return {a.v * b.v, a.d * b.v + a.v * b.d};
    }
    friend Dual operator/(const Dual& a, const Dual& b) {
        return {a.v / b.v, (a.d * b.v - a.v * b.d) / (b.v * b.v)};
    }
    // Comparisons look at values only (branches such as ReLU's follow the value).
    friend bool operator<(const Dual& a, const Dual& b) { return a.v < b.v; }
    friend bool operator>(const Dual& a, const Dual& b) { return a.v > b.v; }
    friend bool operator<=(const Dual& a, const Dual& b) { return a.v <= b.v; }
    friend bool operator>=(const Dual& a, const Dual& b) { return a.v >= b.v; }
    friend bool operator==(const Dual& a, const Dual& b) { return a.v == b.v && a.d == b.d; }
    friend bool operator!=(const Dual& a, const Dual& b) { return !(a == b); }
    friend std::ostream& operator<<(std::ostream& out, const Dual& a) {
        return out << a.v << "+" << a.d << "e";
    }

    // The functions the ops use, found by argument-dependent lookup.
    friend Dual exp(const Dual& a) {
        const S e = std::exp(a.v);
        return {e, e * a.d};
    }
    friend Dual log(const Dual& a) { return {std::log(a.v), a.d / a.v}; }
    friend Dual log1p(const Dual& a) { return {std::log1p(a.v), a.d / (S(1) + a.v)}; }
    friend Dual sqrt(const Dual& a) {
        const S r = std::sqrt(a.v);
        return {r, a.d / (S(2) * r)};
    }
    friend Dual tanh(const Dual& a) {
        const S t = std::tanh(a.v);
        return {t, (S(1) - t * t) * a.d};
    }
    friend Dual atan(const Dual& a) { return {std::atan(a.v), a.d / (S(1) + a.v * a.v)}; }
    friend Dual abs(const Dual& a) { return a.v < S(0) ? -a : a; }
    friend Dual max(const Dual& a, const Dual& b) { return a.v < b.v ? b : a; }
    friend Dual min(const Dual& a, const Dual& b) { return b.v < a.v ? b : a; }
    friend bool isfinite(const Dual& a) { return std::isfinite(a.v) && std::isfinite(a.d); }
};

}  // namespace scaltra::ad

namespace Eigen {

template <class S>
struct NumTraits<scaltra::ad::Dual<S>> : NumTraits<S> {
    using Real = scaltra::ad::Dual<S>;
    using NonInteger = Real;
    using Nested = Real;
    using Literal = Real;
    enum {
        IsComplex = 0,
        IsInteger = 0,
        IsSigned = 1,
        RequireInitialization = 1,
        ReadCost = 2,
        AddCost = 2,
        MulCost = 4
    };
    static Real epsilon() { return Real(NumTraits<S>::epsilon()); }
    static Real dummy_precision() { return Real(NumTraits<S>::dummy_precision()); }
    static Real highest() { return Real(NumTraits<S>::highest()); }
    static Real lowest() { return Real(NumTraits<S>::lowest()); }
};

}  // namespace Eigen
