// Fuzz target: every optimizer's load (classic and learned, float and double:
// testing::AllCases, 20 parameters), checked as optimizer_load_check.hpp says.
#include <tuple>
#include <utility>

#include "optimizer_load_check.hpp"

namespace fuzzing {

void fuzz_optimizer_load(std::span<const std::uint8_t> input) {
    using Cases = testing::AllCases;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (check_load_if_picked<std::tuple_element_t<I, Cases>>(input) || ...);
    }(std::make_index_sequence<std::tuple_size_v<Cases>>{});
}

}  // namespace fuzzing

SCALTRA_FUZZ_ENTRY(fuzzing::fuzz_optimizer_load)
