// Three steps of every classic optimizer on f(x) = ½ Σ hᵢxᵢ², h = (1, 3, 0.5),
// from x₀ = (1, −2, 0.5), against values computed apart from this code by
// tests/reference/torch_optim_reference.py from the formulas torch.optim documents.
#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>

#include <scaltra/optim.hpp>

#include <catch2/catch.hpp>

namespace {

using Vec3 = Eigen::Vector3d;
using Expected = std::array<std::array<double, 3>, 3>;

template <class S>
S tolerance() {
    return std::is_same_v<S, float> ? S(2e-6) : S(1e-14);
}

template <class S, class Opt>
void check_three_steps(Opt opt, const Expected& expected) {
    const Vec3 h{1.0, 3.0, 0.5};
    scaltra::Vec<S> x(3);
    x << S(1), S(-2), S(0.5);
    auto f = [&](const Eigen::Ref<const scaltra::Vec<S>>& at, Eigen::Ref<scaltra::Vec<S>> g) {
        g = h.cast<S>().cwiseProduct(at);
        return S(0.5) * at.dot(g);
    };
    for (std::size_t t = 0; t < 3; ++t) {
        opt.step(x, f);
        for (Eigen::Index i = 0; i < 3; ++i) {
            INFO("step " << t + 1 << ", element " << i);
            const double want = expected[t][static_cast<std::size_t>(i)];
            CHECK(static_cast<double>(x[i])
                  == Approx(want).epsilon(tolerance<S>()).margin(tolerance<S>()));
        }
    }
}

}  // namespace

TEMPLATE_TEST_CASE("SGD matches torch.optim.SGD's formulas", "[optim][formula]", float, double) {
    using S = TestType;
    SECTION("plain") {
        check_three_steps<S>(scaltra::Sgd<S>(3, {.lr = 0.1}),
                             {{{0.9, -1.4, 0.475},
                               {0.81, -0.98, 0.45125},
                               {0.7290000000000001, -0.6859999999999999, 0.4286875}}});
    }
    SECTION("momentum") {
        check_three_steps<S>(scaltra::Sgd<S>(3, {.lr = 0.1, .momentum = 0.9}),
                             {{{0.9, -1.4, 0.475},
                               {0.72, -0.43999999999999995, 0.42874999999999996},
                               {0.486, 0.5560000000000002, 0.36568749999999994}}});
    }
    SECTION("momentum, dampening, weight decay") {
        check_three_steps<S>(
            scaltra::Sgd<S>(3,
                            {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01}),
            {{{0.899, -1.3980000000000001, 0.4745},
              {0.7263809, -0.47748180000000007, 0.42977044999999997},
              {0.50499568619, 0.48033439962, 0.36978739134499994}}});
    }
    SECTION("Nesterov, weight decay") {
        check_three_steps<S>(
            scaltra::Sgd<S>(3,
                            {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}),
            {{{0.8081, -0.8562000000000001, 0.45155},
              {0.5712156100000001, 0.12108078, 0.387139805},
              {0.3218596734410001, 0.6994428039180001, 0.3123829273955}}});
    }
}

TEMPLATE_TEST_CASE("Adam and AdamW match torch.optim's formulas", "[optim][formula]", float,
                   double) {
    using S = TestType;
    SECTION("Adam, defaults") {
        check_three_steps<S>(scaltra::Adam<S>(3, {.lr = 0.1}),
                             {{{0.900000001, -1.9000000001666666, 0.4000000039999998},
                               {0.8004122297123382, -1.800166485947237, 0.3011874278735871},
                               {0.701586274504415, -1.7006233917912488, 0.2048712620977537}}});
    }
    SECTION("Adam, AMSGrad and L2 weight decay") {
        check_three_steps<S>(
            scaltra::Adam<S>(3, {.lr = 0.5, .beta2 = 0.5, .weight_decay = 0.1, .amsgrad = true}),
            {{{0.5000000045454545, -1.5000000008064516, 1.6666666102782557e-08},
              {0.04877821338115512, -0.9840810188965073, -0.29007113598524387},
              {-0.2706592075714785, -0.5159463171443676, -0.34617320589744033}}});
    }
    SECTION("AdamW, decoupled weight decay") {
        check_three_steps<S>(scaltra::AdamW<S>(3, {.lr = 0.1, .weight_decay = 0.1}),
                             {{{0.890000001, -1.8800000001666666, 0.3950000039999998},
                               {0.7815718569541611, -1.7614089504165513, 0.29233871044930515},
                               {0.6751012231892008, -1.6443686833067828, 0.19341561374621458}}});
    }
    SECTION("AdamW, AMSGrad") {
        check_three_steps<S>(
            scaltra::AdamW<S>(3, {.lr = 0.5, .beta2 = 0.5, .weight_decay = 0.1, .amsgrad = true}),
            {{{0.45000000499999987, -1.400000000833333, -0.02499998000000081},
              {-0.007606722158518431, -0.8143179505977576, -0.29770607012438066},
              {-0.30191848175786096, -0.3227604229148441, -0.3242125907678126}}});
    }
    SECTION("Adam, learning rate halved every two steps") {
        check_three_steps<S>(
            scaltra::Adam<S>(3, {.lr = scaltra::schedule::step_decay(0.1, 2, 0.5)}),
            {{{0.900000001, -1.9000000001666666, 0.4000000039999998},
              {0.8004122297123382, -1.800166485947237, 0.3011874278735871},
              {0.7509992521083766, -1.7503949388692428, 0.2530293449856704}}});
    }
}

TEMPLATE_TEST_CASE("RMSProp matches torch.optim.RMSprop's formulas", "[optim][formula]", float,
                   double) {
    using S = TestType;
    SECTION("defaults") {
        check_three_steps<S>(scaltra::RmsProp<S>(3, {.lr = 0.01}),
                             {{{0.9000000099999991, -1.9000000016666667, 0.40000003999998407},
                               {0.8329179752650593, -1.8309433278740568, 0.33733921982706455},
                               {0.7799822819823541, -1.7753494441022075, 0.2904332745102445}}});
    }
    SECTION("momentum") {
        check_three_steps<S>(scaltra::RmsProp<S>(3, {.lr = 0.01, .momentum = 0.9}),
                             {{{0.9000000099999991, -1.9000000016666667, 0.40000003999998407},
                               {0.7429179842650584, -1.7409433293740568, 0.24733925582705016},
                               {0.552914953234408, -1.544129961896348, 0.07365742958225735}}});
    }
    SECTION("centred") {
        check_three_steps<S>(scaltra::RmsProp<S>(3, {.lr = 0.01, .centered = true}),
                             {{{0.8994962285750879, -1.8994962201575805, 0.399496258878103},
                               {0.8317593871030315, -1.8297521513460855, 0.3362588774774378},
                               {0.7780684196313441, -1.7733354129072625, 0.28876015624675233}}});
    }
    SECTION("centred, momentum, weight decay") {
        check_three_steps<S>(
            scaltra::RmsProp<S>(
                3, {.lr = 0.01, .weight_decay = 0.1, .momentum = 0.9, .centered = true}),
            {{{0.8994962276568145, -1.899496220103274, 0.3994962521441012},
              {0.7413059906502579, -1.7392987493582337, 0.24580549498567375},
              {0.5496501810751404, -1.5406780169349672, 0.07086761409335823}}});
    }
}

TEMPLATE_TEST_CASE("AdaGrad matches torch.optim.Adagrad's formulas", "[optim][formula]", float,
                   double) {
    using S = TestType;
    check_three_steps<S>(
        scaltra::AdaGrad<S>(
            3, {.lr = 0.1, .lr_decay = 0.1, .weight_decay = 0.1, .initial_accumulator_value = 0.1}),
        {{{0.9038925537756828, -1.9001298196071652, 0.43117527985462095},
          {0.8442734483101754, -1.8375567470424596, 0.38477651781142175},
          {0.8007446452486937, -1.7913811783574562, 0.3502352348159875}}});
}

TEST_CASE("a gradient whose square overflows float leaves x finite, not NaN", "[optim][formula]") {
    // g² = 1e60 is +inf in float; the accumulators saturate at the largest float
    // (Eigen's vectorised square root would turn +inf into NaN). The step is then
    // finite, about lr·g/√FLT_MAX, where torch's is lr·g/∞ = 0.
    using scaltra::Vec;
    const Vec<float> g = Vec<float>::Constant(37, 1e30f);
    auto check = [&](auto opt, const char* name) {
        INFO(name);
        Vec<float> x = Vec<float>::Ones(37);
        opt.update(x, g);
        CHECK(x.allFinite());
        CHECK((x.array() < 1.0f).all());  // downhill
        CHECK(opt.state().step == 1);
    };
    check(scaltra::Adam<float>(37), "Adam");
    check(scaltra::Adam<float>(37, {.amsgrad = true}), "Adam, amsgrad");
    check(scaltra::RmsProp<float>(37), "RMSProp");
    check(scaltra::AdaGrad<float>(37), "AdaGrad");
}

TEST_CASE(
    "Adam with bfloat16 moments: each stored moment is a bfloat16 neighbour of the "
    "formula's, and x follows the formula",
    "[optim][formula][bfloat16]") {
    using scaltra::bfloat16;
    using scaltra::Vec;
    const Eigen::Index n = 3000;  // several chunks
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    scaltra::Adam<float, bfloat16> opt(n, {.lr = lr, .amsgrad = true});
    STATIC_REQUIRE(std::is_same_v<decltype(opt.state().m), Vec<bfloat16>>);
    scaltra::Rng rng(3);
    Vec<float> x = rng.normal_vector<float>(n);
    // |a − b| within one bfloat16 ulp of b (8 bits of mantissa), and a bfloat16 value.
    auto neighbour = [](double stored, double exact) {
        const double ulp = std::exp2(std::floor(std::log2(std::abs(exact))) - 7);
        return std::abs(stored - exact) <= ulp * (1 + 1e-5) || (exact == 0 && stored == 0);
    };
    for (int t = 1; t <= 4; ++t) {
        const Vec<float> g = rng.normal_vector<float>(n);
        const auto before = opt.state();
        const Vec<float> x_before = x;
        opt.update(x, g);
        Eigen::Index bad_m = 0, bad_v = 0, bad_x = 0, rounded_up = 0;
        for (Eigen::Index i = 0; i < n; ++i) {
            const double m = b1 * static_cast<double>(before.m[i]) + (1 - b1) * g[i];
            const double v = b2 * static_cast<double>(before.v[i]) + (1 - b2) * g[i] * g[i];
            const double v_max = std::max(static_cast<double>(before.v_max[i]), v);
            const double step = lr / (1 - std::pow(b1, t)), root = std::sqrt(1 - std::pow(b2, t));
            const double want = x_before[i] - step * m / (std::sqrt(v_max) / root + eps);
            bad_m += !neighbour(static_cast<double>(opt.state().m[i]), m);
            bad_v += !neighbour(static_cast<double>(opt.state().v[i]), v);
            bad_x += std::abs(x[i] - want) > 1e-5 * (1 + std::abs(want));
            rounded_up += std::abs(static_cast<double>(opt.state().m[i])) > std::abs(m);
        }
        INFO("step " << t);
        CHECK(bad_m == 0);
        CHECK(bad_v == 0);
        CHECK(bad_x == 0);
        CHECK(rounded_up > n / 4);      // stochastic, not truncated: |m| rounds up about as
        CHECK(rounded_up < 3 * n / 4);  // often as down
    }
}
