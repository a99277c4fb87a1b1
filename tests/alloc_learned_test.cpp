// No learned optimizer's step allocates after its first hypergradient or
// meta-step: SCALTRA, LODO, APO and DCO (the counters: alloc_counter.hpp).
#include "alloc_counter.hpp"

#include <vector>

#include <scaltra/nn/mlp.hpp>
#include <scaltra/optim.hpp>

#include <catch2/catch.hpp>

using alloc_counter::allocations_during;
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
}

TEMPLATE_TEST_CASE("APO's steps allocate nothing after the first meta-step", "[optim][apo][alloc]",
                   float, double) {
    using S = TestType;
    // W1 is 48×40: its products are large enough for the GEMM workspace's own blocking.
    scaltra::nn::Mlp<S> model({40, 48, 10}, scaltra::nn::Relu{}, 1);
    const scaltra::Mat<S> X = scaltra::Mat<S>::Random(40, 32),
                          probe = scaltra::Mat<S>::Random(40, 24);
    std::vector<scaltra::Index> labels(32);
    for (std::size_t j = 0; j < labels.size(); ++j)
        labels[j] = static_cast<scaltra::Index>(j % 10);
    scaltra::nn::MlpObjective<S> f(model, X, labels, probe);
    const auto& layout = model.layout();
    const auto tape = scaltra::Hypergradient::tape;
    scaltra::Apo<S> apo(layout, {.base = {.lr = 0.05, .momentum = 0.9},
                                 .interval = 2,
                                 .lambda_fsd = S(0.5),
                                 .lambda_wsd = S(0.1)});
    scaltra::Apo<S, scaltra::Adam<S>> apo_adam(
        layout, {.base = {.lr = 1e-3}, .interval = 2, .lambda_fsd = S(0.5), .hypergradient = tape});
    scaltra::ApoP<S> apo_p(layout,
                           {.lr = 0.05, .momentum = 0.9, .interval = 2, .lambda_fsd = S(0.5)});
    scaltra::ApoP<S> apo_p_taped(
        layout, {.lr = 0.05, .max_factor = 40, .interval = 2, .hypergradient = tape});
    auto steps = [&](auto& opt) {
        scaltra::Vec<S> x = model.init();
        opt.step(x, f);  // a meta-step (step 0) sizes the look-ahead's buffers
        opt.step(x, f);
        return allocations_during([&] {
            for (int t = 0; t < 6; ++t)
                opt.step(x, f);
        });
    };
    CHECK(steps(apo) == 0);
    CHECK(steps(apo_adam) == 0);
    CHECK(steps(apo_p) == 0);
    CHECK(steps(apo_p_taped) == 0);
}

TEMPLATE_TEST_CASE("DCO's steps allocate nothing", "[optim][dco][alloc]", float, double) {
    using S = TestType;
    scaltra::Dcog<S> dcog(1000);
    scaltra::Dcom<S> dcom(1000, {.normalize_gradient = false});
    scaltra::Dcogd<S> dcogd(200);
    CHECK(allocations_per_steps(dcog, 20) == 0);
    CHECK(allocations_per_steps(dcom, 20) == 0);
    CHECK(allocations_per_steps(dcogd, 20) == 0);
}
