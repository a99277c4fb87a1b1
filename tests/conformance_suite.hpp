// The conformance suite every optimizer passes, in float and double (the
// torch.optim / optax practice): shapes stable, save/load continues bit-identically,
// determinism, convergence, validation, and untouched state on bad input.
// Registered per optimizer family by SCALTRA_CROSS_OPTIMIZER_SUITES
// (cross_optimizer_suites.hpp).
#pragma once

#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "optimizer_cases.hpp"
#include "resume_check.hpp"
#include <catch2/catch.hpp>

namespace testing {
namespace conformance_detail {
/// A field holding the optimizer's scalars (not a count, nor LODO's permutations).
template <class Field>
concept ScalarMatrix =
    requires { typename Field::Scalar; } && std::is_floating_point_v<typename Field::Scalar>;

template <class State>
std::vector<std::pair<Index, Index>> shapes(const State& state) {
    std::vector<std::pair<Index, Index>> out;
    scaltra::for_each_field(state, [&](std::string_view, const auto& field) {
        if constexpr (requires { field.rows(); })
            out.emplace_back(field.rows(), field.cols());
        else
            out.emplace_back(1, 1);
    });
    return out;
}

}  // namespace conformance_detail

/// The suite for one case of optimizer_cases.hpp (its SECTIONs run under the
/// calling test case).
template <class TestType>
void conformance() {
    using conformance_detail::ScalarMatrix;
    using conformance_detail::shapes;
    using Opt = typename TestType::Opt;
    using S = typename Opt::Scalar;
    static_assert(scaltra::Optimizer<Opt>);
    // APO learns from a look-ahead with the objective: it takes no ready gradient.
    constexpr bool takes_gradients = scaltra::GradientOptimizer<Opt>;
    constexpr Index n = 20;
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 7);
    scaltra::Rng rng(42);
    const Vec<S> x0 = rng.normal_vector<S>(n);

    SECTION("has a name") {
        CHECK_FALSE(TestType::make(n).name().empty());
    }

    SECTION("state shapes are stable across steps and reset restores the initial state") {
        auto opt = TestType::make(n);
        const auto initial = opt.state();
        Vec<S> x = x0;
        for (int t = 0; t < 5; ++t) {
            opt.step(x, quadratic);
            CHECK(shapes(opt.state()) == shapes(initial));
        }
        CHECK_FALSE(scaltra::bitwise_equal(opt.state(), initial));
        opt.reset();
        CHECK(scaltra::bitwise_equal(opt.state(), initial));
    }

    SECTION("save then load continues bit-identically") {
        auto a = TestType::make(n);
        Vec<S> xa = x0;
        for (int t = 0; t < 7; ++t)
            a.step(xa, quadratic);
        auto b = TestType::make(n);
        testing::check_resumes_bit_identically(a, b, quadratic, xa, 7);
    }

    SECTION("loading a corrupt or mismatched state throws and changes nothing") {
        auto a = TestType::make(n);
        Vec<S> x = x0;
        for (int t = 0; t < 3; ++t)
            a.step(x, quadratic);
        std::stringstream saved;
        a.save(saved);
        const std::string bytes = saved.str();

        auto b = TestType::make(n);
        Vec<S> xb = x0;
        b.step(xb, quadratic);
        const auto before = b.state();
        auto expect_rejected = [&](const std::string& data) {
            std::istringstream in(data);
            CHECK_THROWS_AS(b.load(in), scaltra::CorruptState);
            CHECK(scaltra::bitwise_equal(b.state(), before));
        };
        expect_rejected(bytes.substr(0, bytes.size() - 3));  // truncated
        expect_rejected("not a state at all");
        std::string bad_version = bytes;
        bad_version[8] = 99;
        expect_rejected(bad_version);

        auto other_size = TestType::make(n + 1);
        std::stringstream wrong_shape;
        other_size.save(wrong_shape);
        expect_rejected(wrong_shape.str());
        try {
            std::istringstream in(wrong_shape.str());
            b.load(in);
        } catch (const scaltra::CorruptState& e) {
            CHECK_THAT(e.what(), Catch::Contains("shape"));
        }
    }

    SECTION("same seed, same trajectory, whatever else runs in between") {
        // A stochastic objective: the quadratic's gradient plus seeded noise.
        auto noisy = [&](scaltra::Rng& rng) {
            return [&quadratic, &rng](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> g) {
                const S loss = quadratic(at, g);
                for (Index i = 0; i < g.size(); ++i)
                    g[i] += static_cast<S>(0.1 * rng.normal());
                return loss;
            };
        };
        auto run_alone = [&](std::uint64_t seed) {
            scaltra::Rng rng(seed);
            auto f = noisy(rng);
            auto opt = TestType::make(n);
            Vec<S> x = x0;
            for (int t = 0; t < 50; ++t)
                opt.step(x, f);
            return x;
        };
        // Two runs interleaved step by step, each with its own seed.
        scaltra::Rng rng_a(3), rng_b(4);
        auto fa = noisy(rng_a);
        auto fb = noisy(rng_b);
        auto a = TestType::make(n);
        auto b = TestType::make(n);
        Vec<S> xa = x0, xb = x0;
        for (int t = 0; t < 50; ++t) {
            a.step(xa, fa);
            b.step(xb, fb);
        }
        CHECK(testing::bitwise_equal(run_alone(3), xa));
        CHECK(testing::bitwise_equal(run_alone(4), xb));
        CHECK_FALSE(testing::bitwise_equal(xa, xb));
    }

    SECTION("an objective that throws leaves x and the state untouched") {
        auto opt = TestType::make(n);
        Vec<S> x = x0;
        opt.step(x, quadratic);
        const auto before = opt.state();
        const Vec<S> x_copy = x;
        auto throws = [](const Eigen::Ref<const Vec<S>>&, Eigen::Ref<Vec<S>> g) -> S {
            g.setOnes();
            throw std::runtime_error("data loader failed");
        };
        CHECK_THROWS_WITH(opt.step(x, throws), "data loader failed");
        CHECK(testing::bitwise_equal(x, x_copy));
        CHECK(scaltra::bitwise_equal(opt.state(), before));
    }

    SECTION("a saved state with meaningless values is rejected") {
        auto opt = TestType::make(n);
        Vec<S> x = x0;
        opt.step(x, quadratic);
        const auto before = opt.state();
        auto rejects = [&](const typename Opt::State& bad, const char* says) {
            std::stringstream out;
            scaltra::save_state<S>(out, opt.name(), bad);
            CHECK_THROWS_WITH(opt.load(out), Catch::Contains(says));
            CHECK(scaltra::bitwise_equal(opt.state(), before));
            CHECK_THROWS_AS(opt.set_state(bad), scaltra::CorruptState);
            CHECK_THROWS_WITH(opt.set_state(bad), Catch::Contains(says));
            CHECK(scaltra::bitwise_equal(opt.state(), before));
        };
        auto negative_step = before;
        negative_step.step = -1;
        rejects(negative_step, "step count");
        auto huge_step = before;
        huge_step.step = std::numeric_limits<std::int64_t>::max();
        rejects(huge_step, "step count");
        auto nan_field = before;
        bool poisoned = false;
        scaltra::for_each_field(nan_field, [&](std::string_view, auto& field) {
            if constexpr (ScalarMatrix<std::remove_cvref_t<decltype(field)>>)
                if (!poisoned && field.size() > 0) {
                    field[0] = std::numeric_limits<S>::quiet_NaN();
                    poisoned = true;
                }
        });
        REQUIRE(poisoned);
        rejects(nan_field, "non-finite");
    }

    SECTION("set_state takes what load takes, and refuses a misshapen field") {
        auto opt = TestType::make(n);
        Vec<S> x = x0;
        opt.step(x, quadratic);
        opt.step(x, quadratic);
        auto edited = opt.state();
        ++edited.step;
        scaltra::for_each_field(edited, [](std::string_view, auto& field) {
            if constexpr (ScalarMatrix<std::remove_cvref_t<decltype(field)>>)
                if (field.size() > 0)
                    field.data()[field.size() - 1] *= S(0.5);
        });
        // The edited state loaded from a stream: its bytes, then the rest of a
        // save (a learned optimizer's meta-state; nothing for a classic one).
        std::stringstream saved, unedited, in;
        opt.save(saved);
        scaltra::save_state<S>(unedited, opt.name(), opt.state());
        scaltra::save_state<S>(in, opt.name(), edited);
        in << saved.str().substr(unedited.str().size());
        auto loaded = TestType::make(n);
        loaded.load(in);

        auto set = TestType::make(n);
        std::stringstream meta_too(saved.str());
        set.load(meta_too);
        set.set_state(edited);
        CHECK(scaltra::bitwise_equal(set.state(), edited));
        CHECK(scaltra::bitwise_equal(set.state(), loaded.state()));
        Vec<S> xs = x, xl = x;
        set.step(xs, quadratic);
        loaded.step(xl, quadratic);
        CHECK(xs == xl);

        const auto before = set.state();
        bool resized = false;
        auto misshapen = before;
        scaltra::for_each_field(misshapen, [&](std::string_view, auto& field) {
            if constexpr (requires { field.conservativeResize(1, 1); })
                if (!resized && field.size() > 0) {
                    field.conservativeResize(field.rows() + 1, field.cols());
                    resized = true;
                }
        });
        REQUIRE(resized);
        CHECK_THROWS_WITH(set.set_state(misshapen), Catch::Contains("has shape"));
        CHECK(scaltra::bitwise_equal(set.state(), before));
    }

    SECTION("converges on the sphere and on an ill-conditioned quadratic") {
        const scaltra::problems::Sphere<S> sphere(n);
        auto opt = TestType::make(n);
        Vec<S> x = sphere.initial_point();
        Vec<S> g(n);
        const S start = sphere(x, g);
        for (int t = 0; t < 3000; ++t)
            opt.step(x, sphere);
        CHECK(sphere(x, g) < S(1e-4) * start);

        auto opt2 = TestType::make(n);
        Vec<S> y = quadratic.initial_point();
        const S start2 = quadratic(y, g);
        for (int t = 0; t < 3000; ++t)
            opt2.step(y, quadratic);
        CHECK(quadratic(y, g) < S(1e-2) * start2);
    }

    SECTION("bad hyperparameters throw InvalidArgument naming the field") {
        for (const auto& [field, construct] : TestType::bad()) {
            INFO(field);
            try {
                construct();
                FAIL("no exception for a bad " << field);
            } catch (const scaltra::InvalidArgument& e) {
                CHECK_THAT(e.what(), Catch::Contains(field));
            }
        }
        CHECK_THROWS_AS(Opt(0), scaltra::InvalidArgument);
    }

    SECTION("x or a gradient of the wrong size throws and leaves x and the state untouched") {
        auto opt = TestType::make(n);
        Vec<S> x = x0;
        opt.step(x, quadratic);
        const auto before = opt.state();

        Vec<S> longer = Vec<S>::Ones(n + 1);
        const Vec<S> longer_copy = longer;
        CHECK_THROWS_AS(opt.step(longer, quadratic), scaltra::DimensionMismatch);
        CHECK(testing::bitwise_equal(longer, longer_copy));
        CHECK(scaltra::bitwise_equal(opt.state(), before));

        if constexpr (takes_gradients) {
            const Vec<S> x_copy = x;
            const Vec<S> short_gradient = Vec<S>::Ones(n - 1);
            CHECK_THROWS_AS(opt.update(x, short_gradient), scaltra::DimensionMismatch);
            CHECK(testing::bitwise_equal(x, x_copy));
            CHECK(scaltra::bitwise_equal(opt.state(), before));
        }
    }

    SECTION("a non-finite loss or gradient raises, or skips by policy, leaving all untouched") {
        auto nan_loss = [&](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> g) {
            quadratic(at, g);
            return S(NAN);
        };
        auto inf_gradient = [&](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> g) {
            const S loss = quadratic(at, g);
            g[n / 2] = std::numeric_limits<S>::infinity();
            return loss;
        };
        for (auto policy : {NonFinitePolicy::raise, NonFinitePolicy::skip}) {
            auto opt = TestType::make(n, policy);
            Vec<S> x = x0;
            opt.step(x, quadratic);
            const auto before = opt.state();
            const Vec<S> x_copy = x;
            Vec<S> nan_gradient = Vec<S>::Zero(n);
            nan_gradient[0] = S(NAN);
            if (policy == NonFinitePolicy::raise) {
                CHECK_THROWS_AS(opt.step(x, nan_loss), scaltra::NonFinite);
                CHECK_THROWS_AS(opt.step(x, inf_gradient), scaltra::NonFinite);
                if constexpr (takes_gradients)
                    CHECK_THROWS_AS(opt.update(x, nan_gradient), scaltra::NonFinite);
            } else {
                CHECK(std::isnan(opt.step(x, nan_loss)));
                CHECK(std::isfinite(opt.step(x, inf_gradient)));
                if constexpr (takes_gradients)
                    opt.update(x, nan_gradient);
            }
            CHECK(testing::bitwise_equal(x, x_copy));
            CHECK(scaltra::bitwise_equal(opt.state(), before));
        }
    }

    SECTION("a non-finite x throws NonFinite under either policy, leaving all untouched") {
        for (auto policy : {NonFinitePolicy::raise, NonFinitePolicy::skip}) {
            auto opt = TestType::make(n, policy);
            Vec<S> x = x0;
            opt.step(x, quadratic);
            const auto before = opt.state();
            x[n - 1] = std::numeric_limits<S>::infinity();
            const Vec<S> x_copy = x;
            CHECK_THROWS_WITH(opt.step(x, quadratic), Catch::Contains("x is not finite"));
            if constexpr (takes_gradients) {
                x[0] = S(NAN);
                const Vec<S> with_nan = x;
                CHECK_THROWS_WITH(opt.update(x, Vec<S>::Ones(n)),
                                  Catch::Contains("x is not finite"));
                CHECK(testing::bitwise_equal(x, with_nan));
                x[0] = x_copy[0];
            }
            CHECK(testing::bitwise_equal(x, x_copy));
            CHECK(scaltra::bitwise_equal(opt.state(), before));
        }
    }

    SECTION("update on a block of meta-parameters equals step with the same gradient") {
        if constexpr (takes_gradients) {
            auto a = TestType::make(n);
            auto b = TestType::make(n);
            Vec<S> xa = x0, g(n);
            Vec<S> packed = Vec<S>::Zero(n + 10);  // the block lives inside a larger vector
            packed.segment(4, n) = x0;
            for (int t = 0; t < 5; ++t) {
                a.step(xa, quadratic);
                quadratic(packed.segment(4, n), g);
                b.update(packed.segment(4, n), g);
            }
            CHECK(testing::bitwise_equal(xa, Vec<S>(packed.segment(4, n))));
            CHECK(packed.head(4).isZero());
            CHECK(packed.tail(6).isZero());
        }
    }
}

}  // namespace testing
