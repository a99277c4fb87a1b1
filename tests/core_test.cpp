// core/: errors and validation, Layout, Rng, the state format, schedules, and
// the test problems' gradients against central differences.
#include <array>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>
#include <tuple>
#include <vector>

#include <scaltra/core.hpp>
#include <scaltra/optim/schedule.hpp>
#include <scaltra/problems.hpp>

#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Vec;

TEST_CASE("every error derives from scaltra::Error", "[core][error]") {
    CHECK_THROWS_AS(throw scaltra::InvalidArgument("x"), scaltra::Error);
    CHECK_THROWS_AS(throw scaltra::DimensionMismatch("x"), scaltra::Error);
    CHECK_THROWS_AS(throw scaltra::NonFinite("x"), scaltra::Error);
    CHECK_THROWS_AS(throw scaltra::CorruptState("x"), scaltra::Error);
    CHECK_THROWS_AS(throw scaltra::CorruptData("x"), scaltra::Error);
}

TEST_CASE("range checks name the field, its range and the value", "[core][error]") {
    using scaltra::detail::Bound;
    CHECK_NOTHROW(scaltra::detail::require_in("beta1", 0.0, 0.0, Bound::closed, 1.0, Bound::open));
    CHECK_THROWS_WITH(
        scaltra::detail::require_in("beta1", 1.0, 0.0, Bound::closed, 1.0, Bound::open),
        "Invalid beta1: must be in [0, 1), got 1");
    CHECK_THROWS_AS(
        scaltra::detail::require_in("a", std::nan(""), 0.0, Bound::closed, 1.0, Bound::closed),
        scaltra::InvalidArgument);
    CHECK_THROWS_WITH(scaltra::detail::require_positive("lr", 0.0),
                      "Invalid lr: must be in (0, inf), got 0");
    CHECK_THROWS_AS(scaltra::detail::require_nonnegative("eps", INFINITY),
                    scaltra::InvalidArgument);
    CHECK_THROWS_WITH(scaltra::detail::require_size("x", 3, 4), "x has 3 elements, expected 4");
}

TEST_CASE("Layout lays named blocks out one after another", "[core][layout]") {
    scaltra::Layout layout;
    layout.add("W1", 3, 2).add("b1", 3).add("W2", 1, 3);
    CHECK(layout.size() == 12);
    CHECK(layout.num_blocks() == 3);
    CHECK(layout.at("b1").offset == 6);
    CHECK(layout.at("W2").offset == 9);
    CHECK(layout.find("nope") == nullptr);
    CHECK_THROWS_AS(layout.at("nope"), scaltra::InvalidArgument);
    CHECK_THROWS_AS(layout.add("W1", 1, 1), scaltra::InvalidArgument);
    CHECK_THROWS_AS(layout.add("z", 0, 1), scaltra::InvalidArgument);
    const Index big = Index{1} << 32;
    CHECK_THROWS_WITH(layout.add("huge", big, big), Catch::Contains("overflows"));
    scaltra::Layout almost_full;
    almost_full.add("a", std::numeric_limits<Index>::max() - 3);
    CHECK_THROWS_WITH(almost_full.add("b", 2, 2), Catch::Contains("overflows"));
    CHECK(layout.size() == 12);  // the failed adds left it unchanged

    Vec<double> w(12);
    std::iota(w.data(), w.data() + 12, 0.0);
    auto W1 = scaltra::block_view(w, layout.at("W1"));
    CHECK(W1.rows() == 3);
    CHECK(W1(1, 1) == 4.0);  // column-major: element 3 + 1
    W1(0, 0) = -1;
    CHECK(w[0] == -1);  // a view, not a copy
    const Vec<double>& cw = w;
    auto W2 = scaltra::block_view(cw, layout.at("W2"));
    CHECK(W2(0, 2) == 11.0);
    Vec<double> short_vector(5);
    CHECK_THROWS_AS(scaltra::block_view(short_vector, layout.at("W2")), scaltra::DimensionMismatch);
    // A hand-built block before the vector's start, or of a negative shape.
    CHECK_THROWS_AS(scaltra::block_view(w, scaltra::Block{"w", -4, 2, 2}),
                    scaltra::DimensionMismatch);
    CHECK_THROWS_AS(scaltra::block_view(w, scaltra::Block{"w", 2, -2, 3}),
                    scaltra::DimensionMismatch);

    const scaltra::Layout single = Index(7);
    CHECK(single.size() == 7);
    CHECK(single[0].name == "x");
    CHECK_THROWS_AS(single[1], scaltra::InvalidArgument);
}

TEST_CASE("Rng is deterministic per seed and its draws have the right moments", "[core][rng]") {
    scaltra::Rng a(1), b(1), c(2);
    for (int i = 0; i < 10; ++i)
        CHECK(a() == b());
    CHECK(a() != c());

    scaltra::Rng r(123);
    constexpr int n = 200000;
    double sum = 0, sum_sq = 0, u_sum = 0;
    for (int i = 0; i < n; ++i) {
        const double z = r.normal();
        sum += z;
        sum_sq += z * z;
        const double u = r.uniform();
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
        u_sum += u;
    }
    CHECK(sum / n == Approx(0.0).margin(0.01));
    CHECK(sum_sq / n == Approx(1.0).margin(0.01));
    CHECK(u_sum / n == Approx(0.5).margin(0.005));

    std::array<int, 5> counts{};
    for (int i = 0; i < 50000; ++i)
        ++counts[r.below(5)];
    for (int k : counts)
        CHECK(k == Approx(10000).margin(400));

    CHECK_THROWS_AS(r.below(0), scaltra::InvalidArgument);
    CHECK_THROWS_AS(r.permutation(-1), scaltra::InvalidArgument);
    CHECK_THROWS_AS(r.normal_vector<float>(-2), scaltra::InvalidArgument);

    const auto p = r.permutation(100);
    CHECK(std::set<Index>(p.begin(), p.end()).size() == 100);
    CHECK(*std::min_element(p.begin(), p.end()) == 0);
    CHECK(*std::max_element(p.begin(), p.end()) == 99);
}

namespace {
struct ToyState {
    std::int64_t step = 0;
    double scale = 1.0;
    Vec<double> m;
    scaltra::Mat<double> B;
    static constexpr std::array field_names{"step", "scale", "m", "B"};
    auto fields() { return std::tie(step, scale, m, B); }
    auto fields() const { return std::tie(step, scale, m, B); }
    void validate() const {
        scaltra::detail::require_state(scale > 0, "scale", "must be positive");
    }
};

/// A state holding another (as APO's holds its base optimizer's).
struct NestingState {
    std::int64_t step = 0;
    ToyState inner;
    Vec<double> phi;
    static constexpr std::array field_names{"step", "inner", "phi"};
    auto fields() { return std::tie(step, inner, phi); }
    auto fields() const { return std::tie(step, inner, phi); }
};
}  // namespace

TEST_CASE("Rng streams of a seed are seeded apart from each other and from the seed",
          "[core][rng]") {
    auto first_draws = [](scaltra::Rng r) {
        std::array<std::uint64_t, 4> out{};
        for (auto& x : out)
            x = r();
        return out;
    };
    CHECK(first_draws(scaltra::Rng::stream(5, 1)) == first_draws(scaltra::Rng::stream(5, 1)));
    // Nine streams, all different, and none equal to a plain Rng(seed + stream).
    std::set<std::array<std::uint64_t, 4>> streams, plains;
    for (std::uint64_t seed : {0, 1, 5})
        for (std::uint64_t stream : {0, 1, 2}) {
            streams.insert(first_draws(scaltra::Rng::stream(seed, stream)));
            plains.insert(first_draws(scaltra::Rng(seed + stream)));
        }
    CHECK(streams.size() == 9);
    std::set<std::array<std::uint64_t, 4>> all = streams;
    all.insert(plains.begin(), plains.end());
    CHECK(all.size() == streams.size() + plains.size());
    CHECK(first_draws(scaltra::Rng::stream(0, 0)) != first_draws(scaltra::Rng(0)));
}

TEST_CASE("set_threads validates its argument", "[core]") {
    CHECK_THROWS_AS(scaltra::set_threads(0), scaltra::InvalidArgument);
    scaltra::set_threads(1);
    CHECK(Eigen::nbThreads() == 1);
}

TEST_CASE("the state format round-trips and rejects what does not fit", "[core][state]") {
    ToyState s{5, 0.25, Vec<double>::LinSpaced(4, 0, 1), scaltra::Mat<double>::Identity(2, 3)};
    std::stringstream out;
    scaltra::save_state<double>(out, "Toy", s);
    const std::string bytes = out.str();

    ToyState t{0, 0, Vec<double>::Zero(4), scaltra::Mat<double>::Zero(2, 3)};
    std::istringstream in(bytes);
    scaltra::load_state<double>(in, "Toy", t);
    CHECK(scaltra::bitwise_equal(s, t));

    ToyState u{0, 0, Vec<double>::Zero(4), scaltra::Mat<double>::Zero(3, 2)};
    const ToyState u_before = u;
    auto rejects = [&](const std::string& data, std::string_view name, const char* says) {
        std::istringstream is(data);
        CHECK_THROWS_WITH(scaltra::load_state<double>(is, name, u), Catch::Contains(says));
        CHECK(scaltra::bitwise_equal(u, u_before));
    };
    rejects(bytes, "Toy", "has shape 2x3, the optimizer expects 3x2");
    u.B.resize(2, 3);
    u.B.setZero();
    const ToyState u2_before = u;
    std::istringstream wrong_name(bytes);
    CHECK_THROWS_WITH(scaltra::load_state<double>(wrong_name, "Other", u),
                      Catch::Contains("belongs to optimizer 'Toy'"));
    std::string float_header = bytes;
    float_header[12] = 4;  // the u32 scalar size after the magic and the version
    std::istringstream as_float(float_header);
    CHECK_THROWS_WITH(scaltra::load_state<double>(as_float, "Toy", u),
                      Catch::Contains("holds 4-byte scalars, expected 8"));
    for (std::size_t cut : {std::size_t{4}, std::size_t{20}, bytes.size() - 1}) {
        std::istringstream truncated(bytes.substr(0, cut));
        CHECK_THROWS_AS(scaltra::load_state<double>(truncated, "Toy", u), scaltra::CorruptState);
    }
    CHECK(scaltra::bitwise_equal(u, u2_before));

    ToyState bad = s;  // the state's own validate() runs on load
    bad.scale = -1;
    std::stringstream bad_out;
    scaltra::save_state<double>(bad_out, "Toy", bad);
    CHECK_THROWS_WITH(scaltra::load_state<double>(bad_out, "Toy", u),
                      Catch::Contains("'scale' must be positive"));
    bad.scale = INFINITY;
    std::stringstream inf_out;
    scaltra::save_state<double>(inf_out, "Toy", bad);
    CHECK_THROWS_WITH(scaltra::load_state<double>(inf_out, "Toy", u),
                      Catch::Contains("'scale' is not finite"));
    CHECK(scaltra::bitwise_equal(u, u2_before));
}

TEST_CASE("a state nested in a state round-trips, is compared and validated whole",
          "[core][state]") {
    auto make = [](double fill) {
        return NestingState{3,
                            {5, 0.25 + fill, Vec<double>::Constant(4, fill),
                             scaltra::Mat<double>::Constant(2, 3, fill)},
                            Vec<double>::Constant(2, fill)};
    };
    const NestingState s = make(1);
    std::stringstream out;
    scaltra::save_state<double>(out, "Nest", s);
    const std::string bytes = out.str();
    NestingState t = make(0);
    CHECK_FALSE(scaltra::bitwise_equal(s, t));
    std::istringstream in(bytes);
    scaltra::load_state<double>(in, "Nest", t);
    CHECK(scaltra::bitwise_equal(s, t));
    t.inner.m[2] = -1;  // a difference inside the nested state counts
    CHECK_FALSE(scaltra::bitwise_equal(s, t));

    auto rejects = [&](NestingState target, const std::string& data, const char* says) {
        const NestingState before = target;
        std::istringstream is(data);
        CHECK_THROWS_WITH(scaltra::load_state<double>(is, "Nest", target), Catch::Contains(says));
        CHECK(scaltra::bitwise_equal(target, before));
    };
    NestingState other_shape = make(0);
    other_shape.inner.B.resize(3, 2);
    rejects(other_shape, bytes, "'B' has shape 2x3, the optimizer expects 3x2");
    rejects(make(0), bytes.substr(0, bytes.size() - 20), "truncated");
    NestingState bad = s;
    bad.inner.scale = -2;  // the nested state's validate() runs too
    std::stringstream bad_out;
    scaltra::save_state<double>(bad_out, "Nest", bad);
    rejects(make(0), bad_out.str(), "'scale' must be positive");
    std::stringstream flat;  // a flat state where the nested one is expected
    scaltra::save_state<double>(flat, "Nest", make(1).inner);
    rejects(make(0), flat.str(), "fields");
}

TEST_CASE("learning-rate schedules follow their formulas", "[core][schedule]") {
    using namespace scaltra::schedule;
    const auto step = step_decay(0.1, 3, 0.5);
    CHECK(step(0) == Approx(0.1));
    CHECK(step(2) == Approx(0.1));
    CHECK(step(3) == Approx(0.05));
    CHECK(step(7) == Approx(0.025));

    const auto ex = exponential(2.0, 0.9);
    CHECK(ex(3) == Approx(2.0 * 0.729));

    const auto cos = cosine(1.0, 10, 0.1);
    CHECK(cos(0) == Approx(1.0));
    CHECK(cos(5) == Approx(0.55));
    CHECK(cos(10) == Approx(0.1));
    CHECK(cos(50) == Approx(0.1));

    const auto warm = linear_warmup(4, 0.8, 0.25);
    CHECK(warm(0) == Approx(0.2));
    CHECK(warm(2) == Approx(0.8 * (0.25 + 0.75 * 0.5)));
    CHECK(warm(4) == Approx(0.8));
    CHECK(warm(100) == Approx(0.8));
    const auto warm_cos = linear_warmup(2, cosine(1.0, 10));
    CHECK(warm_cos(1) == Approx((1.0 / 3 + 2.0 / 3 * 0.5) * cosine(1.0, 10)(1)));

    CHECK_THROWS_WITH(step_decay(0.1, 0, 0.5), Catch::Contains("step_size"));
    CHECK_THROWS_WITH(exponential(-1, 0.5), Catch::Contains("lr"));
    CHECK_THROWS_WITH(cosine(0.1, 10, 0.2), Catch::Contains("lr_min"));
    CHECK_THROWS_WITH(linear_warmup(0, 0.1), Catch::Contains("warmup_steps"));
    CHECK_THROWS_WITH(StepDecay(0.1, 0, 0.5),
                      Catch::Contains("step_size"));  // the classes check too
    CHECK_THROWS_WITH(Cosine(0.1, -1), Catch::Contains("total_steps"));

    const scaltra::LearningRate<float> constant = 0.5;
    CHECK(constant(1000) == 0.5f);
    const scaltra::LearningRate<double> custom = [](std::int64_t t) {
        return 1.0 - 0.5 * t;
    };
    CHECK(custom(1) == 0.5);
    CHECK_THROWS_WITH(custom(3), Catch::Contains("Invalid learning rate"));
}

namespace {
// Central differences of f at x, against the gradient f writes.
template <class S, class F>
double gradient_error(const F& f, const Vec<S>& x) {
    Vec<S> g(x.size()), scratch(x.size());
    f(x, g);
    double worst = 0;
    for (Index i = 0; i < x.size(); ++i) {
        const S h = S(1e-6) * std::max(S(1), std::abs(x[i]));
        Vec<S> xp = x, xm = x;
        xp[i] += h;
        xm[i] -= h;
        const double fd = (static_cast<double>(f(xp, scratch)) - f(xm, scratch)) / (2 * h);
        worst = std::max(worst, std::abs(fd - g[i]) / std::max(1.0, std::abs(fd)));
    }
    return worst;
}
}  // namespace

TEST_CASE("test problems: gradients match central differences, optima are stationary",
          "[core][problems]") {
    using namespace scaltra::problems;
    scaltra::Rng rng(5);
    const Rosenbrock<double> rb2;
    const Rosenbrock<double> rb5(5);
    const Sphere<double> sphere(6);
    const IllConditionedQuadratic<double> quad(8, 1e3, 11);
    const auto logistic = LogisticRegression<double>::synthetic(60, 4, 0.1, 2);

    CHECK(gradient_error<double>(rb2, rng.normal_vector<double>(2)) < 1e-6);
    CHECK(gradient_error<double>(rb5, rng.normal_vector<double>(5)) < 1e-6);
    CHECK(gradient_error<double>(sphere, rng.normal_vector<double>(6)) < 1e-6);
    CHECK(gradient_error<double>(quad, rng.normal_vector<double>(8)) < 1e-6);
    CHECK(gradient_error<double>(logistic, rng.normal_vector<double>(4)) < 1e-6);

    auto stationary = [](const auto& problem, const Vec<double>& at) {
        Vec<double> g(at.size());
        const double f = problem(at, g);
        CHECK(f == Approx(problem.optimal_value()).margin(1e-12));
        CHECK(g.norm() < 1e-10);
    };
    stationary(rb2, rb2.optimum());
    stationary(rb5, rb5.optimum());
    stationary(sphere, sphere.optimum());
    stationary(quad, quad.optimum());
    stationary(logistic, logistic.optimum());
    CHECK(quad.lambda.maxCoeff() / quad.lambda.minCoeff() == Approx(1e3));

    Vec<double> g(3);
    CHECK_THROWS_AS(rb2(Vec<double>::Zero(3), g), scaltra::DimensionMismatch);
    CHECK_THROWS_AS(Rosenbrock<double>(1), scaltra::InvalidArgument);
    CHECK_THROWS_WITH(Rosenbrock<double>(3, 2.0), Catch::Contains("needs a = 1"));
    const Rosenbrock<double> shifted(2, 2.0, 10.0);
    stationary(shifted, shifted.optimum());
    CHECK(shifted.optimum() == Vec<double>{{2.0, 4.0}});
    CHECK_THROWS_AS(LogisticRegression<double>(scaltra::Mat<double>::Ones(2, 2),
                                               Vec<double>::Constant(2, 0.5), 0.1),
                    scaltra::InvalidArgument);
    CHECK_THROWS_WITH(Rosenbrock<double>(2, NAN), Catch::Contains("Invalid a"));
    scaltra::Mat<double> with_inf = scaltra::Mat<double>::Ones(2, 2);
    with_inf(1, 0) = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(LogisticRegression<double>(with_inf, Vec<double>::Ones(2), 0.1),
                      Catch::Contains("finite"));
}

TEST_CASE("bfloat16 narrowing rounds stochastically, without bias, and keeps inf and NaN",
          "[core][bfloat16]") {
    using scaltra::bfloat16;
    using scaltra::detail::narrow;
    using scaltra::detail::widen;
    const float ulp = 0x1p-7f;  // of bfloat16 in [1, 2)
    for (const float exact : {1.0f, -1.5f, 0x1p-100f, 0x1.fep127f})
        for (const std::uint32_t noise : {0u, 0x8000u, 0xffffu})
            CHECK(widen(narrow(exact, noise)) == exact);  // a bfloat16 value stays itself
    CHECK(widen(narrow(1 + 0.3f * ulp, 0)) == 1);
    CHECK(widen(narrow(1 + 0.3f * ulp, 0xffff)) == 1 + ulp);
    const float inf = std::numeric_limits<float>::infinity();
    CHECK(widen(narrow(inf, 0xffff)) == inf);
    CHECK(widen(narrow(-inf, 0xffff)) == -inf);
    CHECK(std::isnan(widen(narrow(std::numeric_limits<float>::quiet_NaN(), 0xffff))));
    CHECK(std::isnan(widen(narrow(std::bit_cast<float>(0x7f800001u), 0))));  // a NaN of low bits

    // Over many elements the mean of the rounded values is the value (4σ), each
    // rounded value is one of its two neighbours, and the noise is the salt's.
    const Index count = 20000;
    for (const float x : {1 + 0.3f * ulp, -(1 + 0.8f * ulp), 0.1f}) {
        const std::vector<float> from(static_cast<std::size_t>(count), x);
        std::vector<bfloat16> to(from.size()), again(from.size()), other(from.size());
        scaltra::detail::narrow_into(from.data(), to.data(), count, 7u, 0);
        scaltra::detail::narrow_into(from.data(), again.data(), count, 7u, 0);
        scaltra::detail::narrow_into(from.data(), other.data(), count, 8u, 0);
        double sum = 0;
        Index differ = 0;
        const float lo = widen(narrow(std::abs(x), 0)),
                    step = widen(narrow(std::abs(x), 0xffff)) - lo;
        for (std::size_t e = 0; e < from.size(); ++e) {
            const float r = widen(to[e]);
            CHECK((std::abs(r) == lo || std::abs(r) == lo + step));
            CHECK(widen(again[e]) == r);
            differ += widen(other[e]) != r;
            sum += r;
        }
        const double p = (std::abs(x) - lo) / step;  // the chance of rounding away from 0
        const double sigma = step * std::sqrt(p * (1 - p) / static_cast<double>(count));
        CHECK(std::abs(sum / static_cast<double>(count) - x) < 4 * sigma);
        CHECK(differ > count / 10);  // another salt, other roundings
    }
}
