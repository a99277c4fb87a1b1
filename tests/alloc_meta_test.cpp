// No step of APO allocates after its first meta-step, nor any step of DCO (the
// counters: alloc_counter.hpp).
#include "alloc_counter.hpp"

#include <vector>

#include <scaltra/nn/mlp.hpp>
#include <scaltra/optim.hpp>

#include <catch2/catch.hpp>

using alloc_counter::allocations_during;
using alloc_counter::allocations_per_steps;

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
