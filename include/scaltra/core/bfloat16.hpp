// bfloat16 storage for optimizer state: half the bytes of float, float's range,
// 8 bits of mantissa. Arithmetic stays in float: a value is widened when read
// and narrowed when written back.
//
// Narrowing rounds stochastically: x between the neighbours lo < x < hi becomes
// hi with probability (x − lo)/(hi − lo), so E[round(x)] = x. Round-to-nearest
// would stall a learned state: near |θ| ≈ 1 a bfloat16 ulp is 2⁻⁷, and an update
// of 1e-3 (a meta-step, or Adam's (1 − β₂)v) is below half of it, so every write
// would give the old value back. The random bits come from a counter-based hash
// of (salt, index), so a step is a function of its state and the saved state
// resumes it exactly (the callers salt with the step count and the array).
#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "types.hpp"

namespace scaltra {

using bfloat16 = Eigen::bfloat16;

/// How an optimizer of scalar S stores its state: as S, or as bfloat16 (for float).
template <class T, class S>
concept StorageOf =
    Real<S> &&(std::same_as<T, S> || (std::same_as<T, bfloat16> && std::same_as<S, float>));

namespace detail {

/// The scalars a state's floating-point fields may hold (state_io, validate).
template <class T>
inline constexpr bool is_stored_real_v = std::is_floating_point_v<T> || std::is_same_v<T, bfloat16>;

inline float widen(bfloat16 b) {
    return std::bit_cast<float>(std::uint32_t{std::bit_cast<std::uint16_t>(b)} << 16);
}

/// A 32-bit mixer (the "lowbias32" finaliser: two multiply-xorshift rounds);
/// integer-only, so a loop over it vectorises.
inline std::uint32_t mix32(std::uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/// The salt of one array's writes in one step.
inline std::uint32_t rounding_salt(std::int64_t step, std::uint32_t array) {
    return mix32(static_cast<std::uint32_t>(step) * 0x9e3779b9U + mix32(array + 0x85ebca6bU));
}

/// x rounded stochastically to bfloat16 with the 16 random bits `noise`: adding
/// them below the kept bits and truncating carries into the next value with
/// probability (x − lo)/ulp. ±inf and NaN pass through (NaN stays NaN).
inline bfloat16 narrow(float x, std::uint32_t noise) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
    const bool special = (bits & 0x7f800000U) == 0x7f800000U;
    const std::uint32_t rounded =
        special ? bits | ((bits & 0x007fffffU) != 0 ? 0x00400000U : 0U) : bits + (noise & 0xffffU);
    return std::bit_cast<bfloat16>(static_cast<std::uint16_t>(rounded >> 16));
}

/// to[e] = from[e] (e < len): the identity for S, widening for bfloat16.
template <class T, Real S>
void widen_into(const T* from, S* to, Index len) {
    if constexpr (std::same_as<T, S>) {
        std::copy_n(from, len, to);
    } else {
        // Through a copy of the raw bits: GCC then loads them as one vector and
        // shifts, where element-wise bit_casts become one insert per element.
        constexpr Index kPiece = 64;
        std::uint16_t raw[kPiece];
        for (Index at = 0; at < len; at += kPiece) {
            const Index piece = std::min(kPiece, len - at);
            std::memcpy(raw, from + at, static_cast<std::size_t>(piece) * sizeof(raw[0]));
            for (Index e = 0; e < piece; ++e)
                to[at + e] = std::bit_cast<float>(std::uint32_t{raw[e]} << 16);
        }
    }
}

/// to[e] = from[e] (e < len): a plain copy for S; for bfloat16 rounded
/// stochastically with the noise of element `first + e` under `salt`.
template <class T, Real S>
void narrow_into(const S* from, T* to, Index len, std::uint32_t salt, Index first) {
    for (Index e = 0; e < len; ++e) {
        if constexpr (std::same_as<T, S>)
            to[e] = from[e];
        else
            to[e] = narrow(from[e], mix32(static_cast<std::uint32_t>(first + e) ^ salt));
    }
}

}  // namespace detail
}  // namespace scaltra
