// An explicitly seeded random number generator. scaltra has no global RNG:
// everything random (initialisation, shuffling, permutations) takes an Rng.
// xoshiro256** seeded by SplitMix64, with its own uniform and normal draws, so a
// seed gives the same numbers on every platform (std:: distributions do not).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <utility>
#include <vector>

#include "error.hpp"
#include "types.hpp"
#include "validate.hpp"

namespace scaltra {

class Rng {
public:
    using result_type = std::uint64_t;

    explicit Rng(std::uint64_t seed) {
        // SplitMix64 expands the seed into the 256-bit state (never all zero).
        for (auto& word : s_) {
            seed += 0x9e3779b97f4a7c15ULL;
            word = mix(seed);
        }
    }

    /// A generator for stream `stream` of `seed` (an epoch, a worker), seeded by a
    /// hash of both: unlike `Rng(seed + stream)`, whose state words are those of
    /// `Rng(seed)` shifted by one, streams of a seed are unrelated to each other
    /// and to `Rng(seed)` (salted, so that stream 0 of seed 0 is not Rng(0)).
    static Rng stream(std::uint64_t seed, std::uint64_t stream) {
        return Rng(mix(mix(seed ^ 0x243f6a8885a308d3ULL) ^ (stream + 0x13198a2e03707344ULL)));
    }

    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }

    /// Next 64 random bits (xoshiro256**).
    result_type operator()() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    /// Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }

    /// Uniform in [lo, hi).
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

    /// Standard normal by the Box–Muller transform.
    double normal() {
        const double u1 = 1.0 - uniform();  // in (0, 1], so log is finite
        const double u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    }

    double normal(double mean, double stddev) { return mean + stddev * normal(); }

    /// Uniform integer in [0, n) without modulo bias (rejection of the short tail); n > 0.
    std::uint64_t below(std::uint64_t n) {
        if (n == 0)
            throw InvalidArgument("Invalid n: Rng::below needs n > 0");
        const std::uint64_t threshold = (0 - n) % n;  // 2^64 mod n
        for (;;) {
            const std::uint64_t r = (*this)();
            if (r >= threshold)
                return r % n;
        }
    }

    /// Vector of independent N(mean, stddev²) draws.
    template <class S>
    Vec<S> normal_vector(Index n, S mean = S(0), S stddev = S(1)) {
        detail::require_nonnegative("n", n);
        Vec<S> v(n);
        for (Index i = 0; i < n; ++i)
            v[i] = static_cast<S>(normal(mean, stddev));
        return v;
    }

    /// Shuffles `items` in place, uniformly (Fisher–Yates).
    template <class T>
    void shuffle(std::span<T> items) {
        for (std::size_t i = items.size(); i > 1; --i)
            std::swap(items[i - 1], items[below(i)]);
    }

    /// A uniformly random permutation of 0..n-1.
    std::vector<Index> permutation(Index n) {
        detail::require_nonnegative("n", n);
        std::vector<Index> p(static_cast<std::size_t>(n));
        for (Index i = 0; i < n; ++i)
            p[static_cast<std::size_t>(i)] = i;
        shuffle(std::span<Index>(p));
        return p;
    }

    bool operator==(const Rng&) const = default;

private:
    /// SplitMix64's output function: a bijective 64-bit mixer.
    static std::uint64_t mix(std::uint64_t z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

    std::array<std::uint64_t, 4> s_{};
};

}  // namespace scaltra
