// Every optimizer (testing::AllCases) under faults and in front of a clip:
// - NaN and ±inf injected into the loss or the gradient at random evaluations
//   (a learned optimizer's look-ahead evaluations included): under
//   NonFinitePolicy::skip nothing becomes non-finite, skipped_steps() counts the
//   steps that met a fault, and the run equals a clean run without them;
// - Clipped<Opt> (optim/clip.hpp): each optimizer with its gradients clipped by
//   global norm or by value equals the optimizer on the clipped objective.
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

using scaltra::Index;
using scaltra::NonFinitePolicy;
using scaltra::Vec;
using testing::AllCases;

namespace {

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

}  // namespace

TEMPLATE_LIST_TEST_CASE("non-finite values at random steps are skipped, counted, and leave "
                        "every value finite",
                        "[optim][faults]", AllCases) {
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

TEMPLATE_LIST_TEST_CASE("clipping by global norm or by value composes with the optimizer",
                        "[optim][clip]", AllCases) {
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

TEST_CASE("Clip::apply limits the global norm or each element, and leaves non-finite "
          "gradients alone",
          "[optim][clip]") {
    const auto by_norm = scaltra::Clip::by_global_norm(2.0);
    Vec<double> g(3);
    g << 3, 0, -4;  // norm 5
    by_norm.apply<double>(g);
    CHECK(g.isApprox(Vec<double>((Vec<double>(3) << 1.2, 0, -1.6).finished()), 1e-15));
    Vec<double> small = (Vec<double>(2) << 0.3, -0.4).finished();  // norm 0.5 < 2: unchanged
    const Vec<double> small_copy = small;
    by_norm.apply<double>(small);
    CHECK(small == small_copy);

    // A float gradient whose squared norm overflows is still scaled to norm 2.
    Vec<float> huge = Vec<float>::Constant(4, 1e30f);
    by_norm.apply<float>(huge);
    CHECK(huge.isApprox(Vec<float>::Constant(4, 1.0f), 1e-6f));

    const auto by_value = scaltra::Clip::by_value(0.5);
    Vec<double> v = (Vec<double>(4) << -2, -0.25, 0.5, 7).finished();
    by_value.apply<double>(v);
    CHECK(v == (Vec<double>(4) << -0.5, -0.25, 0.5, 0.5).finished());

    for (const auto& clip : {by_norm, by_value}) {
        Vec<double> bad = (Vec<double>(3) << 1e9, std::numeric_limits<double>::infinity(), NAN)
                              .finished();
        clip.apply<double>(bad);
        CHECK(bad[0] == 1e9);
        CHECK(std::isinf(bad[1]));
        CHECK(std::isnan(bad[2]));
    }

    for (double threshold : {0.0, -1.0, double(NAN)}) {
        CHECK_THROWS_WITH(scaltra::clip_by_global_norm(threshold, scaltra::Sgd<float>(2)),
                          Catch::Contains("max_norm"));
        CHECK_THROWS_WITH(scaltra::clip_by_value(threshold, scaltra::Sgd<float>(2)),
                          Catch::Contains("max_abs"));
    }
    // 1e-50 is positive as a double and 0 as a float: it would zero every gradient.
    CHECK_THROWS_WITH(scaltra::clip_by_global_norm(1e-50, scaltra::Sgd<float>(2)),
                      Catch::Contains("rounds to 0"));
    CHECK_NOTHROW(scaltra::clip_by_global_norm(1e-50, scaltra::Sgd<double>(2)));
    Vec<double> untouched = Vec<double>::Ones(2);
    CHECK_THROWS_AS(scaltra::Clip({scaltra::Clip::Kind::value, -1}).apply<double>(untouched),
                    scaltra::InvalidArgument);
    CHECK(untouched == Vec<double>::Ones(2));
    auto opt = scaltra::clip_by_value(1.0, scaltra::Sgd<float>(3));
    Vec<float> x = Vec<float>::Zero(3);
    CHECK_THROWS_AS(opt.update(x, Vec<float>::Ones(2)), scaltra::DimensionMismatch);
    CHECK(x.isZero());
}

TEST_CASE("a clipped optimizer passes a model objective's discrepancy through unclipped",
          "[optim][clip]") {
    struct Model {
        float operator()(const Eigen::Ref<const Vec<float>>& x, Eigen::Ref<Vec<float>> g) {
            g = 100 * x;
            return 50 * x.squaredNorm();
        }
        float discrepancy(const Eigen::Ref<const Vec<float>>& u,
                          const Eigen::Ref<const Vec<float>>& w, scaltra::Discrepancy,
                          Eigen::Ref<Vec<float>> g) {
            g += 100 * (u - w);
            return 50 * (u - w).squaredNorm();
        }
    } model;
    const scaltra::Clip clip = scaltra::Clip::by_value(1.0);
    scaltra::detail::ClippedObjective<Model, float> f{model, clip};
    static_assert(scaltra::ModelObjective<decltype(f), float>);
    const Vec<float> u = Vec<float>::Constant(2, 1), w = Vec<float>::Zero(2);
    Vec<float> g = Vec<float>::Zero(2);
    CHECK(f(u, g) == 100);
    CHECK(g == Vec<float>::Constant(2, 1));  // clipped
    g.setZero();
    CHECK(f.discrepancy(u, w, scaltra::Discrepancy::squared_error, g) == 100);
    CHECK(g == Vec<float>::Constant(2, 100));  // not clipped
}

TEST_CASE("a finite step that overflows x throws NonFinite under either policy",
          "[optim][faults]") {
    const float big = 0.9f * std::numeric_limits<float>::max();
    for (const auto policy : {NonFinitePolicy::raise, NonFinitePolicy::skip}) {
        // SGD: x near the top of float's range, a finite gradient pushing it over.
        scaltra::Sgd<float> sgd(4, {.lr = 1.0f, .on_non_finite = policy});
        Vec<float> x = Vec<float>::Constant(4, big);
        const Vec<float> g = Vec<float>::Constant(4, -0.5f * big);
        CHECK_THROWS_WITH(sgd.update(x, g), Catch::Contains("made x non-finite"));
        // Adam from a state no run reaches (set through set_state): m huge, v tiny.
        scaltra::Adam<float> adam(4, {.lr = 1.0f, .on_non_finite = policy});
        auto state = adam.state();
        state.m.setConstant(big);
        state.v.setConstant(1e-30f);
        state.step = 3;
        adam.set_state(state);
        Vec<float> y = Vec<float>::Ones(4);
        CHECK_THROWS_AS(adam.update(y, Vec<float>::Ones(4)), scaltra::NonFinite);
        CHECK(adam.skipped_steps() == 0);  // not a skip: the move was made
    }
}
