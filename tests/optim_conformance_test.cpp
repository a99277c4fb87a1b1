// One conformance suite run over every optimizer, in float and double (the
// torch.optim / optax practice): shapes stable, save/load continues bit-identically,
// determinism, convergence, validation, and untouched state on bad input.
#include <functional>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "resume_check.hpp"
#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::NonFinitePolicy;
using scaltra::Vec;

namespace {

// Each optimizer configuration under test: how to build it (with a tuned learning
// rate for the convergence checks) and which settings must be rejected.
template <class S>
struct SgdCase {
    using Opt = scaltra::Sgd<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.2, .momentum = 0.5, .nesterov = true, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"momentum",
                 [] {
                     Opt(2, {.momentum = -0.1});
                 }},
                {"dampening",
                 [] {
                     Opt(2, {.dampening = 2});
                 }},
                {"weight_decay",
                 [] {
                     Opt(2, {.weight_decay = -1});
                 }},
                {"nesterov",
                 [] {
                     Opt(2, {.momentum = 0, .nesterov = true});
                 }},
                {"nesterov", [] {
                     Opt(2, {.momentum = 0.9, .dampening = 0.1, .nesterov = true});
                 }}};
    }
};

template <class S>
struct AdamCase {
    using Opt = scaltra::Adam<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.05, .amsgrad = true, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -0.1});
                 }},
                {"beta1",
                 [] {
                     Opt(2, {.beta1 = 1});
                 }},
                {"beta2",
                 [] {
                     Opt(2, {.beta2 = -0.5});
                 }},
                {"eps",
                 [] {
                     Opt(2, {.eps = -1e-8});
                 }},
                {"weight_decay", [] {
                     Opt(2, {.weight_decay = -1});
                 }}};
    }
};

template <class S>
struct AdamWCase {
    using Opt = scaltra::AdamW<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = scaltra::schedule::cosine(0.05, 3000),
                       .weight_decay = 1e-3,
                       .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"beta1",
                 [] {
                     Opt(2, {.beta1 = S(NAN)});
                 }},
                {"weight_decay", [] {
                     Opt(2, {.weight_decay = -1});
                 }}};
    }
};

template <class S>
struct RmsPropCase {
    using Opt = scaltra::RmsProp<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = scaltra::schedule::exponential(0.01, 0.999),
                       .momentum = 0.5,
                       .centered = true,
                       .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"alpha",
                 [] {
                     Opt(2, {.alpha = 1.5});
                 }},
                {"eps",
                 [] {
                     Opt(2, {.eps = -1});
                 }},
                {"weight_decay",
                 [] {
                     Opt(2, {.weight_decay = -1});
                 }},
                {"momentum", [] {
                     Opt(2, {.momentum = -1});
                 }}};
    }
};

template <class S>
struct AdaGradCase {
    using Opt = scaltra::AdaGrad<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = scaltra::schedule::linear_warmup(10, 0.5), .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"lr_decay",
                 [] {
                     Opt(2, {.lr_decay = -1});
                 }},
                {"weight_decay",
                 [] {
                     Opt(2, {.weight_decay = -1});
                 }},
                {"initial_accumulator_value",
                 [] {
                     Opt(2, {.initial_accumulator_value = -1});
                 }},
                {"eps", [] {
                     Opt(2, {.eps = -1});
                 }}};
    }
};

template <class S>
struct ScaltraCase {
    using Opt = scaltra::Scaltra<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.alpha0 = 0.2, .meta = {.lr = 1e-2}, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"alpha0",
                 [] {
                     Opt(2, {.alpha0 = 0});
                 }},
                {"beta",
                 [] {
                     Opt(2, {.beta = 1});
                 }},
                {"gamma0",
                 [] {
                     Opt(2, {.gamma0 = -1});
                 }},
                {"epsilon",
                 [] {
                     Opt(2, {.epsilon = -1e-4});
                 }},
                {"epsilon",
                 [] {
                     Opt(2, {.epsilon = 2});
                 }},  // ε·γ₀ ≥ 1
                {"gamma_decay",
                 [] {
                     Opt(2, {.gamma_decay = 1.5});
                 }},
                {"b_scale",
                 [] {
                     Opt(2, {.b_scale = -1});
                 }},
                {"tau_min",
                 [] {
                     Opt(2, {.tau_min = 0});
                 }},
                {"alpha0",
                 [] {
                     Opt(2, {.alpha0 = 1e7});
                 }},  // τ₀ below tau_min
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

template <class S>
struct LodoCase {
    using Opt = scaltra::Lodo<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.alpha0 = 0.05, .layers = 4, .meta = {.lr = 1e-2}, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"alpha0",
                 [] {
                     Opt(2, {.alpha0 = 0});
                 }},
                {"layers",
                 [] {
                     Opt(2, {.layers = -1});
                 }},
                {"block",
                 [] {
                     Opt(2, {.block = -1});
                 }},
                {"block",
                 [] {
                     Opt(2, {.block = 33});
                 }},
                {"beta",
                 [] {
                     Opt(2, {.beta = 1});
                 }},
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

template <class S>
struct ApoCase {
    using Opt = scaltra::Apo<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.base = {.lr = 0.05, .momentum = 0.9},
                       .interval = 3,
                       .lambda_wsd = 0.1,
                       .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"interval",
                 [] {
                     Opt(2, {.interval = 0});
                 }},
                {"lambda_fsd",
                 [] {
                     Opt(2, {.lambda_fsd = -1});
                 }},
                {"lambda_wsd",
                 [] {
                     Opt(2, {.lambda_wsd = S(NAN)});
                 }},
                {"lr",
                 [] {
                     Opt(2, {.base = {.lr = 0}});
                 }},  // η₀ = 0
                {"lr",
                 [] {
                     Opt(2, {.base = {.lr = scaltra::schedule::cosine(0.1, 100)}});
                 }},  // APO is the schedule
                {"momentum",
                 [] {
                     Opt(2, {.base = {.momentum = -1}});
                 }},
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

/// A layout of n elements with a weight matrix (2×((n−2)/2)) and a bias.
inline scaltra::Layout matrix_and_bias(Index n) {
    const Index cols = (n - 2) / 2;
    return scaltra::Layout().add("W", 2, cols).add("b", n - 2 * cols);
}

template <class S>
struct ApoPCase {
    using Opt = scaltra::ApoP<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(
            matrix_and_bias(n),
            {.lr = 0.05, .momentum = 0.5, .interval = 3, .lambda_wsd = 0.1, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(matrix_and_bias(6), {.lr = -1});
                 }},
                {"momentum",
                 [] {
                     Opt(matrix_and_bias(6), {.momentum = 1});
                 }},
                {"max_factor",
                 [] {
                     Opt(matrix_and_bias(6), {.max_factor = -1});
                 }},
                {"interval",
                 [] {
                     Opt(matrix_and_bias(6), {.interval = 0});
                 }},
                {"lambda_fsd",
                 [] {
                     Opt(matrix_and_bias(6), {.lambda_fsd = -1});
                 }},
                {"lambda_wsd",
                 [] {
                     Opt(matrix_and_bias(6), {.lambda_wsd = -1});
                 }},
                {"layout",
                 [] {
                     Opt(6);
                 }},  // no weight matrix
                {"lr", [] {
                     Opt(matrix_and_bias(6), {.meta = {.lr = -1}});
                 }}};
    }
};

// The DCO optimizers untrained (φ₀), on raw gradients: ordinary optimizers of the concept.
template <class S>
struct DcogCase {
    using Opt = scaltra::Dcog<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.5, .normalize_gradient = false, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = 0});
                 }},
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

template <class S>
struct DcomCase {
    using Opt = scaltra::Dcom<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.5, .momentum = 0.5, .normalize_gradient = false, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = S(NAN)});
                 }},
                {"momentum",
                 [] {
                     Opt(2, {.momentum = 1});
                 }},
                {"alpha", [] {
                     Opt(2, {.meta = {.alpha = 2}});
                 }}};
    }
};

template <class S>
struct DcogdCase {
    using Opt = scaltra::Dcogd<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.5, .normalize_gradient = false, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"max_size",
                 [] {
                     Opt(2, {.max_size = 0});
                 }},
                {"max_size", [] {
                     Opt(5, {.max_size = 4});
                 }}};
    }
};

using AllCases =
    std::tuple<SgdCase<float>, SgdCase<double>, AdamCase<float>, AdamCase<double>, AdamWCase<float>,
               AdamWCase<double>, RmsPropCase<float>, RmsPropCase<double>, AdaGradCase<float>,
               AdaGradCase<double>, ScaltraCase<float>, ScaltraCase<double>, LodoCase<float>,
               LodoCase<double>, ApoCase<float>, ApoCase<double>, ApoPCase<float>,
               ApoPCase<double>, DcogCase<float>, DcogCase<double>, DcomCase<float>,
               DcomCase<double>, DcogdCase<float>, DcogdCase<double>>;

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

}  // namespace

TEMPLATE_LIST_TEST_CASE("optimizer conformance", "[optim][conformance]", AllCases) {
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
            if constexpr (requires { field.size(); })
                if (!poisoned && field.size() > 0) {
                    field[0] = std::numeric_limits<S>::quiet_NaN();
                    poisoned = true;
                }
        });
        REQUIRE(poisoned);
        rejects(nan_field, "non-finite");
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
