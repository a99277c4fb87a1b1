// Every optimizer under faults and in front of a clip (registered per optimizer
// family by SCALTRA_CROSS_OPTIMIZER_SUITES, cross_optimizer_suites.hpp):
// - NaN and ±inf injected into the loss or the gradient at random evaluations
//   (a learned optimizer's look-ahead evaluations included): under
//   NonFinitePolicy::skip nothing becomes non-finite, skipped_steps() counts the
//   steps that met a fault, and the run equals a clean run without them;
// - Clipped<Opt> (optim/clip.hpp): each optimizer with its gradients clipped by
//   global norm or by value equals the optimizer on the clipped objective.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "optimizer_cases.hpp"
#include "resume_check.hpp"
#include <catch2/catch.hpp>

namespace testing {
/// Every field of a state (nested states included) is finite.
template <class State>
bool state_finite(const State& state) {
    bool finite = true;
    scaltra::for_each_field(state, [&](std::string_view, const auto& field) {
        using Field = std::remove_cvref_t<decltype(field)>;
        if constexpr (scaltra::StateAggregate<Field>)
            finite = finite && state_finite(field);
        else if constexpr (requires { field.size(); })
            finite = finite && scaltra::detail::all_finite(field);
        else if constexpr (std::is_floating_point_v<Field>)
            finite = finite && std::isfinite(field);
    });
    return finite;
}

/// A quadratic whose evaluations are poisoned at random, one in `one_in` (0:
/// never, 1: always): a NaN or infinite loss, or a NaN or ±inf gradient element.
/// `poisoned` says whether any evaluation was since it was last cleared. (One
/// objective type for every check here: each type instantiates every optimizer's
/// step once more, and the build is long enough.)
template <class S>
struct FaultyQuadratic {
    const scaltra::problems::IllConditionedQuadratic<S>& quadratic;
    std::uint64_t one_in = 5;
    scaltra::Rng rng{17};
    bool poisoned = false;

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> g) {
        S loss = quadratic(x, g);
        if (one_in == 0 || rng.below(one_in) != 0)
            return loss;
        poisoned = true;
        const auto inf = std::numeric_limits<S>::infinity();
        const auto where = static_cast<Index>(rng.below(static_cast<std::uint64_t>(g.size())));
        switch (rng.below(5)) {
            case 0: return std::numeric_limits<S>::quiet_NaN();
            case 1: return inf;
            case 2: g[where] = std::numeric_limits<S>::quiet_NaN(); break;
            case 3: g[where] = inf; break;
            default: g[where] = -inf; break;
        }
        return loss;
    }
};

/// Faults at random steps are skipped, counted, and leave every value finite.
template <class TestType>
void skips_non_finite() {
    using Opt = typename TestType::Opt;
    using S = typename Opt::Scalar;
    constexpr Index n = 20;
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 7);
    const Vec<S> x0 = scaltra::Rng(42).normal_vector<S>(n);

    auto faulty = TestType::make(n, NonFinitePolicy::skip);
    FaultyQuadratic<S> f{quadratic};
    Vec<S> x = x0;
    Vec<S> poison = Vec<S>::Zero(n);
    poison[3] = std::numeric_limits<S>::infinity();
    std::int64_t faults = 0;
    int clean_steps = 0;
    for (int t = 0; t < 300; ++t) {
        f.poisoned = false;
        if constexpr (scaltra::GradientOptimizer<Opt>) {
            if (t % 50 == 49) {  // a ready gradient that is not finite
                faulty.update(x, poison);
                f.poisoned = true;
            } else {
                faulty.step(x, f);
            }
        } else {
            faulty.step(x, f);
        }
        faults += f.poisoned ? 1 : 0;
        clean_steps += f.poisoned ? 0 : 1;
        INFO("step " << t);
        REQUIRE(scaltra::detail::all_finite(x));
        REQUIRE(state_finite(faulty.state()));
    }
    CHECK(faults > 30);
    CHECK(faulty.skipped_steps() == faults);
    // The saved state, the meta-optimizer's included, loads: load refuses non-finite values.
    std::stringstream saved;
    faulty.save(saved);
    auto reloaded = TestType::make(n, NonFinitePolicy::skip);
    CHECK_NOTHROW(reloaded.load(saved));

    // A skipped step changes nothing, so the run is a clean run of the clean steps.
    auto clean = TestType::make(n);
    FaultyQuadratic<S> never{quadratic, 0};
    Vec<S> y = x0;
    for (int t = 0; t < clean_steps; ++t)
        clean.step(y, never);
    CHECK(testing::bitwise_equal(x, y));
    CHECK(scaltra::bitwise_equal(faulty.state(), clean.state()));
    CHECK(clean.skipped_steps() == 0);
    faulty.reset();
    CHECK(faulty.skipped_steps() == 0);
}

/// Clipped<Opt> equals Opt on the clipped objective, and leaves faults to Opt's policy.
template <class TestType>
void composes_with_clipping() {
    using Opt = typename TestType::Opt;
    using S = typename Opt::Scalar;
    using Clipped = scaltra::Clipped<Opt>;
    static_assert(scaltra::Optimizer<Clipped>);
    static_assert(scaltra::GradientOptimizer<Clipped> == scaltra::GradientOptimizer<Opt>);
    constexpr Index n = 20;
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 7);
    const Vec<S> x0 = scaltra::Rng(42).normal_vector<S>(n);

    // The quadratic's gradients at x0 have norm ~30 and elements up to ~10: both
    // clips act. Clip::apply itself is checked against its formula below.
    FaultyQuadratic<S> clean{quadratic, 0};
    for (const auto& clip : {scaltra::Clip::by_global_norm(0.5), scaltra::Clip::by_value(0.05),
                             scaltra::Clip::by_global_norm(INFINITY)}) {
        INFO("clip kind " << static_cast<int>(clip.kind) << ", threshold " << clip.threshold);
        Clipped a(clip, TestType::make(n));
        auto b = TestType::make(n);
        scaltra::detail::ClippedObjective<FaultyQuadratic<S>, S> clipped_clean{clean, clip};
        Vec<S> xa = x0, xb = x0;
        for (int t = 0; t < 20; ++t)
            CHECK(a.step(xa, clean) == b.step(xb, clipped_clean));
        CHECK(testing::bitwise_equal(xa, xb));
        CHECK(scaltra::bitwise_equal(a.state(), b.state()));
        if constexpr (scaltra::GradientOptimizer<Opt>) {
            Vec<S> g(n);
            quadratic(xa, g);
            const Vec<S> g_copy = g;
            a.update(xa, g);
            CHECK(testing::bitwise_equal(g, g_copy));  // the caller's gradient is not clipped
            clip.template apply<S>(g);
            b.update(xb, g);
            CHECK(testing::bitwise_equal(xa, xb));
            CHECK(scaltra::bitwise_equal(a.state(), b.state()));
        }
        // Clipping has no state: a's checkpoint is b's.
        std::stringstream saved_a, saved_b;
        a.save(saved_a);
        b.save(saved_b);
        CHECK(saved_a.str() == saved_b.str());
        CHECK(a.name() == b.name());
    }

    // An unclipped run differs: the clip did act.
    Clipped clipped(scaltra::Clip::by_global_norm(0.5), TestType::make(n));
    auto plain = TestType::make(n);
    Vec<S> xc = x0, xp = x0;
    for (int t = 0; t < 5; ++t) {
        clipped.step(xc, clean);
        plain.step(xp, clean);
    }
    CHECK_FALSE(testing::bitwise_equal(xc, xp));

    // Non-finite values reach the optimizer's policy, not the clip.
    FaultyQuadratic<S> always{quadratic, 1};
    Clipped raising(scaltra::Clip::by_value(0.05), TestType::make(n));
    Vec<S> x = x0;
    for (int t = 0; t < 5; ++t)
        CHECK_THROWS_AS(raising.step(x, always), scaltra::NonFinite);
    Clipped skipping(scaltra::Clip::by_global_norm(0.5), TestType::make(n, NonFinitePolicy::skip));
    for (int t = 0; t < 5; ++t)
        skipping.step(x, always);
    CHECK(skipping.skipped_steps() == 5);
    CHECK(testing::bitwise_equal(x, x0));
}

}  // namespace testing
