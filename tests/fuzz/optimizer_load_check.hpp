// What the optimizer loaders' fuzz target checks, one optimizer at a time: the
// fuzzer (optimizer_load_fuzz.cpp) dispatches over all of testing::AllCases, and the
// corpus replay runs in each family's test file over that family's cases
// (cross_optimizer_suites.hpp), where the optimizers are compiled anyway.
//
// An input's first byte picks the case (its index in AllCases, modulo their count),
// the rest is the stream. load must either throw CorruptState, leaving the state bit
// for bit as it was, or take a state that saves back to the same bytes and that a
// step can use: a step either leaves x finite or raises NonFinite (as for any
// diverged state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "../optimizer_cases.hpp"
#include "fuzz_target.hpp"

namespace fuzzing {

/// The index of `Case` in testing::AllCases.
template <class Case, class... All>
constexpr std::size_t index_in(std::tuple<All...>*) {
    std::size_t i = 0;
    bool found = false;
    ((found = found || std::is_same_v<Case, All>, i += found ? 0 : 1), ...);
    return i;
}

template <class Case>
inline constexpr std::size_t kCaseIndex =
    index_in<Case>(static_cast<testing::AllCases*>(nullptr));

/// Checks Case's load on `bytes`, as above; a broken invariant calls fuzz_fail.
template <class Case>
void check_load(std::string_view bytes) {
    using S = typename Case::Opt::Scalar;
    constexpr scaltra::Index n = 20;
    auto opt = Case::make(n);
    const auto before = opt.state();
    std::istringstream in{std::string(bytes)};
    try {
        opt.load(in);
    } catch (const scaltra::CorruptState&) {
        if (!scaltra::bitwise_equal(opt.state(), before))
            fuzz_fail("a load that threw changed the state");
        return;
    }
    std::ostringstream saved;
    opt.save(saved);
    if (bytes.substr(0, saved.str().size()) != saved.str())
        fuzz_fail("a loaded state does not save back to the bytes it was read from");
    // The conformance suite's quadratic, so that the step shares its instantiation.
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 7);
    scaltra::Vec<S> x = scaltra::Vec<S>::Ones(n);
    try {
        opt.step(x, quadratic);
    } catch (const scaltra::NonFinite&) {
        return;
    }
    if (!scaltra::detail::all_finite(x))
        fuzz_fail("a step from a loaded state made x non-finite without a NonFinite");
}

/// If `input`'s first byte picks Case, checks Case's load on the rest and returns true.
template <class Case>
bool check_load_if_picked(std::span<const std::uint8_t> input) {
    constexpr std::size_t count = std::tuple_size_v<testing::AllCases>;
    static_assert(kCaseIndex<Case> < count, "Case is not in testing::AllCases");
    if (input.empty() || input[0] % count != kCaseIndex<Case>)
        return false;
    check_load<Case>(as_chars(input.subspan(1)));
    return true;
}

}  // namespace fuzzing
