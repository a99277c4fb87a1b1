// No step of SCALTRA or LODO allocates after its first hypergradient (the
// counters: alloc_counter.hpp; APO and DCO: alloc_meta_test.cpp, a unit of its
// own so that the two compile in parallel).
#include "alloc_counter.hpp"

#include <scaltra/optim.hpp>

#include <catch2/catch.hpp>

#include <type_traits>

using alloc_counter::allocations_per_steps;

TEMPLATE_TEST_CASE("a learned optimizer's steps allocate nothing after the first hypergradient",
                   "[optim][alloc]", float, double) {
    using S = TestType;
    // SCALTRA: the closed form, and the tape (whose arena is sized by the first
    // hypergradient, in the second step).
    scaltra::Scaltra<S> scaltra(1000);
    scaltra::Scaltra<S> taped(1000, {.hypergradient = scaltra::Hypergradient::tape});
    scaltra::Vec<S> x = scaltra::Vec<S>::Ones(1000);
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(1000, 10.0, 1);
    taped.step(x, quadratic);
    CHECK(allocations_per_steps(scaltra, 20) == 0);
    CHECK(allocations_per_steps(taped, 20) == 0);
    // The per-matrix curvature (closed form) of blocks taking either path, with factors small
    // and large enough for Eigen's blocked Cholesky (≥ 32): 40×15 and 80×40 by
    // Woodbury, 10×40 and 40×90 by a Cholesky of A itself.
    scaltra::Layout matrix;
    matrix.add("W", 40, 15).add("V", 10, 40).add("U", 80, 40).add("T", 40, 90);
    scaltra::Scaltra<S> per_matrix(matrix, {.curvature = scaltra::Curvature::per_matrix});
    CHECK(allocations_per_steps(per_matrix, 20) == 0);
    // Rank one, not fused (a penalty), and rank 3 (Woodbury) with both penalties.
    scaltra::Scaltra<S> rank_one_l2(1000, {.l2 = S(1e-3)});
    CHECK(allocations_per_steps(rank_one_l2, 20) == 0);
    scaltra::Scaltra<S> penalised(1000, {.rank = 3, .l2 = S(1e-3), .l1 = S(1e-4)});
    CHECK(allocations_per_steps(penalised, 20) == 0);

    // LODO: fused with its Adam, and its separate closed-form steps (SGD as the
    // meta-optimizer has no fused form). The first hypergradient sizes the passes'
    // scratch, in the second step.
    // A block size without a fixed-size kernel (3) and the tape, whose scratch the
    // first recording makes.
    scaltra::Lodo<S> lodo(1000, {.layers = 4});
    scaltra::Lodo<S, scaltra::Sgd<S>> lodo_sgd(1000, {.layers = 4});
    scaltra::Lodo<S> lodo_k3(1000, {.layers = 4, .block = 3});
    scaltra::Lodo<S> lodo_taped(1000, {.layers = 4, .hypergradient = scaltra::Hypergradient::tape});
    for (auto* opt : {&lodo, &lodo_k3, &lodo_taped})
        opt->step(x, quadratic);
    lodo_sgd.step(x, quadratic);
    CHECK(allocations_per_steps(lodo, 20) == 0);
    CHECK(allocations_per_steps(lodo_sgd, 20) == 0);
    CHECK(allocations_per_steps(lodo_k3, 20) == 0);
    CHECK(allocations_per_steps(lodo_taped, 20) == 0);
    // Meta-state in bfloat16: the widening into the passes' scratch and the
    // rounding back allocate nothing either.
    if constexpr (std::is_same_v<S, float>) {
        scaltra::CompactLodo<S> compact(1000, {.layers = 4});
        scaltra::CompactLodo<S> compact_taped(
            1000, {.layers = 4, .hypergradient = scaltra::Hypergradient::tape});
        compact.step(x, quadratic);
        compact_taped.step(x, quadratic);
        CHECK(allocations_per_steps(compact, 20) == 0);
        CHECK(allocations_per_steps(compact_taped, 20) == 0);
    }
}
