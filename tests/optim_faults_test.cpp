// Clipping and overflow outside the cross-optimizer suites (faults_suite.hpp runs
// those over every optimizer): Clip::apply against its formula, a clipped model
// objective's discrepancy, and a finite step whose result overflows.
#include <cmath>
#include <limits>

#include <scaltra/optim.hpp>

#include <catch2/catch.hpp>

using scaltra::NonFinitePolicy;
using scaltra::Vec;

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
