// The save/load round trip every optimizer test makes: a saved optimizer,
// loaded into another, must continue bit for bit.
#pragma once

#include <cstring>
#include <sstream>

#include <scaltra/core/state_io.hpp>
#include <scaltra/core/types.hpp>

#include <catch2/catch.hpp>

namespace testing {

/// a and b hold the same bits (memcmp: −0 ≠ 0, and a NaN equals itself).
template <class S>
bool bitwise_equal(const scaltra::Vec<S>& a, const scaltra::Vec<S>& b) {
    return a.size() == b.size()
           && std::memcmp(a.data(), b.data(), sizeof(S) * static_cast<std::size_t>(a.size())) == 0;
}

/// Saves `a`, which has run to `xa`, loads the save into `b`, then steps both
/// `steps` times from xa on f: the states after loading, every loss, the
/// iterates and the final states must agree bit for bit. Leaves xa where a ended.
template <class Opt, class F>
void check_resumes_bit_identically(Opt& a, Opt& b, F&& f, scaltra::Vec<typename Opt::Scalar>& xa,
                                   int steps) {
    std::stringstream saved;
    a.save(saved);
    b.load(saved);
    CHECK(scaltra::bitwise_equal(a.state(), b.state()));
    scaltra::Vec<typename Opt::Scalar> xb = xa;
    for (int t = 0; t < steps; ++t)
        CHECK(a.step(xa, f) == b.step(xb, f));
    CHECK(bitwise_equal(xa, xb));
    CHECK(scaltra::bitwise_equal(a.state(), b.state()));
}

}  // namespace testing
