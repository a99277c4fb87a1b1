// The suites every optimizer passes (conformance_suite.hpp, faults_suite.hpp, and
// the replay of the optimizer loaders' fuzz corpus: fuzz/optimizer_load_check.hpp),
// and those every learned optimizer passes (phi_blocks_suite.hpp), registered per
// optimizer family: each family's test file registers them for its
// own cases (optimizer_cases.hpp), so each optimizer is compiled in one file beside
// its own tests. Compiling an optimizer is most of what a test file costs, and the
// suites over all cases in one file compiled each optimizer once more.
#pragma once

#include "conformance_suite.hpp"
#include "faults_suite.hpp"
#include "fuzz/optimizer_load_check.hpp"
#include "fuzz/replay.hpp"
#include "phi_blocks_suite.hpp"
#include <catch2/catch.hpp>

/// Registers the cross-optimizer test cases over `Cases`, a std::tuple of cases;
/// each case's name carries the list's name and the case's index in it.
#define SCALTRA_CROSS_OPTIMIZER_SUITES(Cases)                                                  \
    TEMPLATE_LIST_TEST_CASE("optimizer conformance", "[optim][conformance]", Cases) {          \
        testing::conformance<TestType>();                                                      \
    }                                                                                          \
    TEMPLATE_LIST_TEST_CASE("non-finite values at random steps are skipped, counted, and "     \
                            "leave every value finite",                                        \
                            "[optim][faults]", Cases) {                                        \
        testing::skips_non_finite<TestType>();                                                 \
    }                                                                                          \
    TEMPLATE_LIST_TEST_CASE("clipping by global norm or by value composes with the optimizer", \
                            "[optim][clip]", Cases) {                                          \
        testing::composes_with_clipping<TestType>();                                           \
    }                                                                                          \
    TEMPLATE_LIST_TEST_CASE("the optimizer loaders' fuzz corpus replays without a finding",    \
                            "[optim][fuzz]", Cases) {                                          \
        std::size_t picked = 0;                                                                \
        fuzzing::replay("optimizer_load", [&](std::span<const std::uint8_t> input) {           \
            picked += fuzzing::check_load_if_picked<TestType>(input);                          \
        });                                                                                    \
        CHECK(picked > 0); /* the corpus has inputs for this case */                           \
    }

/// Registers the learned optimizers' test cases (φ's blocks) over `Cases`.
#define SCALTRA_PHI_BLOCKS_SUITE(Cases)                                                        \
    TEMPLATE_LIST_TEST_CASE("learned optimizers name the blocks of phi, which tile it and "    \
                            "are live",                                                        \
                            "[optim][state]", Cases) {                                         \
        testing::phi_blocks_tile_and_are_live<TestType>();                                     \
    }
