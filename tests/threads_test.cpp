// What may be shared between threads (README, "Threads"): distinct optimizers,
// each with its own parameters, step at once in two threads, reading one shared
// const objective, and end exactly as each does alone; fit on two OpenMP threads
// (the tape's threaded products) ends exactly as on one. The tsan preset runs
// these cases under ThreadSanitizer.
#include <cstdint>
#include <thread>
#include <tuple>
#include <vector>

#include <scaltra/core/threads.hpp>
#include <scaltra/nn.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>
#include <scaltra/train.hpp>

#include "optimizer_cases.hpp"
#include "resume_check.hpp"
#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Vec;

using ThreadCases = std::tuple<testing::AdamCase<float>, testing::ScaltraCase<float>,
                               testing::LodoCase<double>, testing::ApoCase<float>,
                               testing::DcomCase<double>>;

TEMPLATE_LIST_TEST_CASE("two optimizers step at once in two threads, each as it would alone",
                        "[threads]", ThreadCases) {
    using S = typename TestType::Opt::Scalar;
    constexpr Index n = 300;
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 7);  // shared, const
    auto run = [&](std::uint64_t seed, Vec<S>& x) {
        auto opt = TestType::make(n);
        x = scaltra::Rng(seed).normal_vector<S>(n);
        for (int t = 0; t < 2000; ++t)
            opt.step(x, quadratic);
        return opt.state();
    };
    Vec<S> xa, xb, alone_a, alone_b;
    const auto state_alone_a = run(1, alone_a);
    const auto state_alone_b = run(2, alone_b);
    decltype(run(1, xa)) state_a, state_b;
    std::thread a([&] { state_a = run(1, xa); });
    std::thread b([&] { state_b = run(2, xb); });
    a.join();
    b.join();
    CHECK(testing::bitwise_equal(xa, alone_a));
    CHECK(testing::bitwise_equal(xb, alone_b));
    CHECK(scaltra::bitwise_equal(state_a, state_alone_a));
    CHECK(scaltra::bitwise_equal(state_b, state_alone_b));
}

TEST_CASE("fit on two threads (threaded products) ends as on one thread", "[threads]") {
    // 40-128-4 at batch 64: the first layer's products (128×64×40) take the
    // tape's threaded GEMM path.
    scaltra::Rng rng(3);
    scaltra::data::LabelledSet<float> train{scaltra::Mat<float>(40, 512),
                                             std::vector<Index>(512)};
    for (Index j = 0; j < 512; ++j) {
        const auto c = static_cast<Index>(rng.below(4));
        train.labels[static_cast<std::size_t>(j)] = c;
        train.inputs.col(j) = rng.normal_vector<float>(40);
        train.inputs(c, j) += 2.0f;
    }
    auto run = [&](int threads) {
        scaltra::set_threads(threads);
        scaltra::nn::Mlp<float> model({40, 128, 4}, scaltra::nn::Relu{}, 5);
        Vec<float> w = model.init();
        scaltra::Adam<float> opt(model.layout(), {.lr = 1e-2f});
        scaltra::fit(model, opt, w, train, {.epochs = 2, .batch_size = 64, .seed = 1});
        scaltra::set_threads(1);
        return w;
    };
    const Vec<float> one = run(1);
    CHECK(testing::bitwise_equal(run(2), one));
}
