// Fuzz target: every optimizer's load (classic and learned, float and double:
// testing::AllCases, 20 parameters). The first byte picks the optimizer, the
// rest is the stream. load must either throw CorruptState, leaving the state
// bit for bit as it was, or take a state that saves back to the same bytes and
// that a step can use: a step either leaves x finite or raises NonFinite (as for
// any diverged state).
#include <sstream>
#include <string>
#include <tuple>
#include <utility>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "../optimizer_cases.hpp"
#include "fuzz_target.hpp"

namespace fuzzing {
namespace {

template <class Case>
void load_into(std::string_view bytes) {
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

}  // namespace

void fuzz_optimizer_load(std::span<const std::uint8_t> input) {
    using Cases = testing::AllCases;
    if (input.empty())
        return;
    const std::size_t which = input[0] % std::tuple_size_v<Cases>;
    const std::string_view bytes = as_chars(input.subspan(1));
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((which == I ? load_into<std::tuple_element_t<I, Cases>>(bytes) : void()), ...);
    }(std::make_index_sequence<std::tuple_size_v<Cases>>{});
}

}  // namespace fuzzing

SCALTRA_FUZZ_ENTRY(fuzzing::fuzz_optimizer_load)
