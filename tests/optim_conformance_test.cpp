// The cross-optimizer suites (cross_optimizer_suites.hpp) over the classic
// optimizers, and the kinds of objective every optimizer's step takes.
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "cross_optimizer_suites.hpp"
#include <catch2/catch.hpp>

using scaltra::Vec;

SCALTRA_CROSS_OPTIMIZER_SUITES(testing::ClassicCases)

TEST_CASE("objectives may be generic lambdas, functions or problem objects", "[optim]") {
    auto generic = [](const auto& x, auto& grad) {
        grad = 2 * x;
        return x.squaredNorm();
    };
    static_assert(scaltra::Objective<decltype(generic), double>);
    static_assert(scaltra::Objective<scaltra::problems::Sphere<float>, float>);
    static_assert(!scaltra::Objective<scaltra::problems::Sphere<float>, double>);
    scaltra::Sgd<double> opt(2, {.lr = 0.25});
    Vec<double> x = Vec<double>::Ones(2);
    CHECK(opt.step(x, generic) == 2.0);
    CHECK(x.isApprox(Vec<double>::Constant(2, 0.5)));
}
