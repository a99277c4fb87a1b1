// APO (optim/apo.hpp): the base optimizers' directions, checks A1–A5 of
// ALGORITHMS.md, the look-ahead's failures, and the drivers around it.
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Eigenvalues>

#include <scaltra/nn.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>
#include <scaltra/train.hpp>

#include "cross_optimizer_suites.hpp"
#include "resume_check.hpp"
#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;

namespace {

/// A small classification problem on an Mlp: a batch, its labels and a probe batch B′.
template <class S>
struct Classification {
    scaltra::nn::Mlp<S> model{{6, 5, 4}, scaltra::nn::Tanh{}, 3};
    Mat<S> inputs, probe;
    std::vector<Index> labels;
    Vec<S> w0;

    explicit Classification(std::uint64_t seed = 7) {
        scaltra::Rng rng(seed);
        inputs = Mat<S>(6, 12);
        probe = Mat<S>(6, 9);
        for (Index i = 0; i < inputs.size(); ++i)
            inputs(i) = static_cast<S>(rng.normal());
        for (Index i = 0; i < probe.size(); ++i)
            probe(i) = static_cast<S>(rng.normal());
        for (Index j = 0; j < inputs.cols(); ++j)
            labels.push_back(static_cast<Index>(rng.below(4)));
        w0 = model.init();
    }
    scaltra::nn::MlpObjective<S> objective() {
        return {model, inputs, std::span<const Index>(labels), probe};
    }
};

/// Runs `steps` steps of opt from x on f.
template <class Opt, class F>
void run(Opt& opt, Vec<typename Opt::Scalar>& x, F&& f, int steps) {
    for (int t = 0; t < steps; ++t)
        opt.step(x, f);
}

/// Central difference of q(φ) at φ, in direction e.
template <class Q>
double central(Q&& q, const Vec<double>& phi, Index i, double h) {
    Vec<double> p = phi, m = phi;
    p[i] += h;
    m[i] -= h;
    return (q(p) - q(m)) / (2 * h);
}

}  // namespace

TEMPLATE_TEST_CASE("a base optimizer's direction is its step's, and leaves its state", "[apo]",
                   float, double) {
    using S = TestType;
    const Index n = 700;  // more than one chunk
    const scaltra::problems::IllConditionedQuadratic<S> f(n, 50.0, 2);
    auto check = [&](auto opt) {
        using Opt = decltype(opt);
        INFO(opt.name());
        Vec<S> x = f.initial_point(), g(n);
        run(opt, x, f, 3);
        f(x, g);
        const auto state = opt.state();
        Vec<S> d(n);
        Opt::direction(state, opt.options(), x, g, d);
        CHECK(scaltra::bitwise_equal(state, opt.state()));
        // The step at η and at 2η differ by ηd: d does not depend on η.
        for (S eta : {S(0.01), S(0.003)}) {
            auto s1 = state, s2 = state;
            Vec<S> x1 = x, x2 = x;
            Opt::apply_at(s1, opt.options(), eta, x1, g);
            Opt::apply_at(s2, opt.options(), 2 * eta, x2, g);
            CHECK(scaltra::bitwise_equal(s1, s2));
            const S tol = std::is_same_v<S, float> ? S(2e-5) : S(1e-12);
            CHECK(((x - eta * d) - x1).norm() <= tol * (1 + x.norm()));
            CHECK(((x1 - x2) - eta * d).norm() <= tol * (1 + x.norm()));
        }
        // apply_at at the options' rate is the step.
        auto stepped = opt;
        Vec<S> xs = x, xa = x;
        auto sa = state;
        stepped.update(xs, g);
        Opt::apply_at(sa, opt.options(), opt.options().lr(state.step), xa, g);
        CHECK(testing::bitwise_equal(xs, xa));
        CHECK(scaltra::bitwise_equal(sa, stepped.state()));
    };
    check(scaltra::Sgd<S>(n, {.lr = 0.01}));
    check(scaltra::Sgd<S>(n, {.lr = 0.01, .momentum = 0.9, .dampening = 0.2, .weight_decay = 0.1}));
    check(scaltra::Sgd<S>(n, {.lr = 0.01, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true}));
    check(scaltra::Adam<S>(n, {.lr = 0.01, .weight_decay = 0.1}));
    check(scaltra::Adam<S>(n, {.lr = 0.01, .amsgrad = true}));
    check(scaltra::AdamW<S>(n, {.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}));
    check(scaltra::RmsProp<S>(n, {.lr = 0.01, .weight_decay = 0.1}));
    check(scaltra::RmsProp<S>(n, {.lr = 0.01, .momentum = 0.5, .centered = true}));
}

TEMPLATE_TEST_CASE("A1: APO without meta-updates is its base optimizer, bit for bit", "[apo]",
                   float, double) {
    using S = TestType;
    Classification<S> p;
    auto objective = p.objective();
    auto check = [&](auto base, const auto& base_options) {
        using Base = decltype(base);
        INFO(base.name());
        scaltra::Apo<S, Base> apo(p.model.layout(), {.base = base_options,
                                                     .interval = 3,
                                                     .lambda_fsd = S(0.5),
                                                     .lambda_wsd = S(0.1),
                                                     .meta = {.lr = 0}});
        Vec<S> xa = p.w0, xb = p.w0;
        for (int t = 0; t < 10; ++t)
            CHECK(apo.step(xa, objective) == base.step(xb, objective));
        CHECK(testing::bitwise_equal(xa, xb));
        CHECK(scaltra::bitwise_equal(apo.state().base, base.state()));
        CHECK(apo.state().step == 10);
        CHECK(apo.state().base.step == 10);  // once per step, never in the look-ahead
        CHECK(apo.lr() == S(base_options.lr(0)));
        CHECK(apo.meta_optimizer()->state().step == 4);  // steps 0, 3, 6, 9
    };
    const Index n = p.model.layout().size();
    const scaltra::SgdOptions<S> momentum{.lr = 0.05, .momentum = 0.9};
    const scaltra::SgdOptions<S> nesterov{.lr = 0.05, .momentum = 0.9, .nesterov = true};
    const scaltra::SgdOptions<S> plain{.lr = 0.1, .weight_decay = 0.01};
    const scaltra::AdamOptions<S> adam{.lr = 0.01};
    const scaltra::AdamWOptions<S> adamw{.lr = 0.01, .amsgrad = true};
    const scaltra::RmsPropOptions<S> rmsprop{.lr = 0.01, .momentum = 0.5, .centered = true};
    check(scaltra::Sgd<S>(n, plain), plain);
    check(scaltra::Sgd<S>(n, momentum), momentum);
    check(scaltra::Sgd<S>(n, nesterov), nesterov);
    check(scaltra::Adam<S>(n, adam), adam);
    check(scaltra::AdamW<S>(n, adamw), adamw);
    check(scaltra::RmsProp<S>(n, rmsprop), rmsprop);
}

TEMPLATE_TEST_CASE("A2: on a quadratic APO's learning rate converges to the Cauchy step", "[apo]",
                   float, double) {
    using S = TestType;
    const scaltra::problems::IllConditionedQuadratic<S> f(10, 10.0, 4);
    const Vec<S> x0 = f.initial_point();
    Vec<S> g(10), hg(10), probe(10);
    f(x0, g);
    // Hg from the gradient's change along g: the quadratic's gradient is affine.
    f(x0 + g, probe);
    hg = probe - g;
    for (S lambda_wsd : {S(0), S(0.5)}) {
        INFO("lambda_wsd " << lambda_wsd);
        // Q(η) = f(x − ηg) + (λ/2)η²‖g‖² is least at η* = gᵀg / (gᵀHg + λgᵀg).
        const S target = g.squaredNorm() / (g.dot(hg) + lambda_wsd * g.squaredNorm());
        // SGD on φ = log(η/η₀): dQ/dφ = −η(gᵀg − η(gᵀHg + λgᵀg)), near η* about
        // η*²(gᵀHg + λgᵀg)(φ − φ*); a meta-rate of half its inverse contracts.
        const S meta_lr = S(0.5) / (target * g.squaredNorm());
        scaltra::Apo<S, scaltra::Sgd<S>, scaltra::Sgd<S>> apo(10, {.base = {.lr = S(0.01)},
                                                                   .interval = 1,
                                                                   .lambda_wsd = lambda_wsd,
                                                                   .meta = {.lr = meta_lr}});
        for (int t = 0; t < 300; ++t) {
            Vec<S> x = x0;  // the same point every step: one g, one Cauchy step
            apo.step(x, f);
        }
        CHECK(apo.lr() == Approx(target).epsilon(std::is_same_v<S, float> ? 1e-4 : 1e-10));
    }
}

TEST_CASE("A3: APO's meta-gradient equals the tape's and central differences", "[apo]") {
    Classification<double> p;
    auto objective = p.objective();
    auto check = [&](auto opt) {
        INFO(opt.rule().kName << " on " << opt.state().base.field_names.size());
        Vec<double> x = p.w0;
        run(opt, x, objective, 4);  // a state with momentum and moments
        const auto& rule = opt.rule();
        Vec<double> g = Vec<double>::Zero(x.size()), v(x.size()), closed(1),
                    taped = Vec<double>::Zero(1);
        objective(x, g);
        auto state = opt.state();
        auto q = [&](const Vec<double>& phi) {
            auto at = state;
            at.phi = phi;
            Vec<double> scratch(x.size());
            return rule.meta_objective(at, x, g, objective, scratch);
        };
        rule.meta_objective(state, x, g, objective, v);
        rule.hypergradient(state, v, closed);
        scaltra::ad::Tape<double> tape;
        tape.vjp(rule.record(tape, state, taped.data()), v);
        const double fd = central(q, state.phi, 0, 1e-5);
        CHECK(closed[0] == Approx(taped[0]).epsilon(1e-12));
        CHECK(closed[0] == Approx(fd).epsilon(1e-6));
        CHECK(std::abs(closed[0]) > 1e-6);  // not trivially zero
    };
    for (auto rho : {scaltra::Discrepancy::kl_softmax, scaltra::Discrepancy::squared_error}) {
        auto options = [&](auto base) {
            return scaltra::ApoOptions<double, decltype(base)>{
                .base = base, .lambda_fsd = 0.7, .lambda_wsd = 0.3, .rho = rho};
        };
        const Index n = p.model.layout().size();
        check(scaltra::Apo<double>(
            n, options(scaltra::SgdOptions<double>{.lr = 0.3, .momentum = 0.9})));
        check(scaltra::Apo<double>(
            n, options(scaltra::SgdOptions<double>{.lr = 0.3, .momentum = 0.9, .nesterov = true})));
        check(scaltra::Apo<double, scaltra::Adam<double>>(
            n, options(scaltra::AdamOptions<double>{.lr = 0.05})));
        check(scaltra::Apo<double, scaltra::AdamW<double>>(
            n, options(scaltra::AdamWOptions<double>{.lr = 0.05})));
        check(scaltra::Apo<double, scaltra::RmsProp<double>>(
            n, options(scaltra::RmsPropOptions<double>{.lr = 0.01, .centered = true})));
    }
}

TEMPLATE_TEST_CASE("A4: APO-P at A = B = I, S = √η is SGD at η, bit for bit", "[apo]", float,
                   double) {
    using S = TestType;
    Classification<S> p;
    auto objective = p.objective();
    for (S momentum : {S(0), S(0.9)}) {
        INFO("momentum " << momentum);
        scaltra::ApoP<S> apo(p.model.layout(), {.lr = S(0.25),  // √0.25 = 0.5: P = 0.25·I exactly
                                                .momentum = momentum,
                                                .max_factor = momentum > 0 ? 5 : 0,
                                                .interval = 2,
                                                .lambda_fsd = S(0.5),
                                                .meta = {.lr = 0}});
        scaltra::Sgd<S> sgd(p.model.layout(), {.lr = S(0.25), .momentum = momentum});
        Vec<S> xa = p.w0, xb = p.w0;
        for (int t = 0; t < 6; ++t)
            CHECK(apo.step(xa, objective) == sgd.step(xb, objective));
        CHECK(testing::bitwise_equal(xa, xb));
        for (std::size_t l = 0; l < p.model.layout().num_blocks(); ++l)
            CHECK(apo.lr(l) == Approx(0.25));
    }
}

TEST_CASE("A5: APO-P's meta-gradients equal the tape's and central differences", "[apo]") {
    Classification<double> p;
    auto objective = p.objective();
    // Every factor learned, and W1's 6×6 A kept at I (max_factor 5).
    for (Index max_factor : {0, 5}) {
        INFO("max_factor " << max_factor);
        scaltra::ApoP<double> opt(p.model.layout(), {.lr = 0.2,
                                                     .momentum = 0.5,
                                                     .max_factor = max_factor,
                                                     .interval = 1,
                                                     .lambda_fsd = 0.4,
                                                     .lambda_wsd = 0.2,
                                                     .meta = {.lr = 0.05}});
        Vec<double> x = p.w0;
        run(opt, x, objective, 5);  // A, B, S away from I, I, √η₀
        const auto& rule = opt.rule();
        const auto state = opt.state();
        const Index m = state.phi.size();
        Vec<double> g = Vec<double>::Zero(x.size()), v(x.size()), closed(m),
                    taped = Vec<double>::Zero(m);
        objective(x, g);
        rule.meta_objective(state, x, g, objective, v);
        rule.hypergradient(state, v, closed);
        scaltra::ad::Tape<double> tape;
        tape.vjp(rule.record(tape, state, taped.data()), v);
        CHECK((closed - taped).norm() <= 1e-10 * closed.norm());
        auto q = [&](const Vec<double>& phi) {
            auto at = state;
            at.phi = phi;
            Vec<double> scratch(x.size());
            return rule.meta_objective(at, x, g, objective, scratch);
        };
        scaltra::Rng rng(5);
        int checked = 0;
        for (const scaltra::Block& b : rule.meta_layout().blocks()) {
            INFO(b.name);
            for (int k = 0; k < 3; ++k) {
                const auto i =
                    b.offset + static_cast<Index>(rng.below(static_cast<std::uint64_t>(b.size())));
                CHECK(closed[i]
                      == Approx(central(q, state.phi, i, 1e-6)).margin(1e-8).epsilon(1e-5));
                ++checked;
            }
        }
        CHECK(checked == 3 * static_cast<int>(rule.meta_layout().num_blocks()));
        CHECK(closed.norm() > 1e-6);
        CHECK((rule.meta_layout().find("A:W1") == nullptr) == (max_factor == 5));
    }
}

TEST_CASE("APO-P's P is PSD, and its per-block learning rate is tr(P)/(pq)", "[apo]") {
    scaltra::Layout layout;
    layout.add("W", 3, 4).add("b", 3);
    scaltra::ApoP<double> opt(layout, {.lr = 0.3});
    CHECK(opt.lr(0) == Approx(0.3));
    CHECK(opt.lr(1) == Approx(0.3));
    // P from random A, B, S, column by column: P e_k = vec(B (S⊙S⊙(Bᵀ E_k A)) Aᵀ).
    scaltra::Rng rng(2);
    auto state = opt.state();
    for (Index i = 0; i < state.phi.size(); ++i)
        state.phi[i] = rng.normal();
    const auto& ml = opt.rule().meta_layout();
    const Mat<double> A = scaltra::block_view(state.phi, ml.at("A:W"));
    const Mat<double> B = scaltra::block_view(state.phi, ml.at("B:W"));
    const Mat<double> Sm = scaltra::block_view(state.phi, ml.at("S:W"));
    Mat<double> P(12, 12);
    for (Index k = 0; k < 12; ++k) {
        Mat<double> E = Mat<double>::Zero(3, 4);
        E(k) = 1;
        const Mat<double> D =
            B * Sm.cwiseProduct(Sm).cwiseProduct(B.transpose() * E * A) * A.transpose();
        P.col(k) = Eigen::Map<const Vec<double>>(D.data(), 12);
    }
    CHECK((P - P.transpose()).norm() < 1e-10 * P.norm());
    CHECK(Eigen::SelfAdjointEigenSolver<Mat<double>>(P).eigenvalues().minCoeff()
          > -1e-10 * P.norm());
    CHECK(opt.rule().block_lr(state, 0) == Approx(P.trace() / 12));
}

namespace {
/// The problem's objective, whose second call (the look-ahead) throws or returns NaN.
struct FailingLookahead {
    scaltra::nn::MlpObjective<float> f;
    bool throws;
    int calls = 0;
    float operator()(const Eigen::Ref<const Vec<float>>& at, Eigen::Ref<Vec<float>> grad) {
        const float loss = f(at, grad);
        if (++calls == 2 && throws)
            throw std::runtime_error("look-ahead failed");
        return calls == 2 ? NAN : loss;
    }
    float discrepancy(const Eigen::Ref<const Vec<float>>& u, const Eigen::Ref<const Vec<float>>& w,
                      scaltra::Discrepancy rho, Eigen::Ref<Vec<float>> grad) {
        return f.discrepancy(u, w, rho, grad);
    }
};
}  // namespace

TEST_CASE("APO's look-ahead: a failure or a non-finite meta-gradient changes nothing", "[apo]") {
    Classification<float> p;
    auto objective = p.objective();
    const auto& layout = p.model.layout();
    for (auto policy : {scaltra::NonFinitePolicy::raise, scaltra::NonFinitePolicy::skip}) {
        INFO("policy " << static_cast<int>(policy));
        scaltra::Apo<float> apo(layout, {.base = {.lr = 0.1f, .momentum = 0.9f},
                                         .interval = 2,
                                         .lambda_fsd = 0.3f,
                                         .on_non_finite = policy});
        scaltra::ApoP<float> apop(
            layout, {.lr = 0.1f, .interval = 2, .lambda_fsd = 0.3f, .on_non_finite = policy});
        auto check = [&](auto& opt) {
            Vec<float> x = p.w0;
            run(opt, x, objective, 2);  // the next step is a meta-step
            const auto before = opt.state();
            const auto meta_before = opt.meta_optimizer()->state();
            const Vec<float> x_before = x;
            FailingLookahead throwing{objective, true}, nan{objective, false};
            CHECK_THROWS_WITH(opt.step(x, throwing), "look-ahead failed");
            if (policy == scaltra::NonFinitePolicy::raise)
                CHECK_THROWS_WITH(opt.step(x, nan), Catch::Contains("meta-gradient is not finite"));
            else
                opt.step(x, nan);
            // A plain objective cannot give the function-space term.
            auto plain = [&](const Eigen::Ref<const Vec<float>>& at, Eigen::Ref<Vec<float>> grad) {
                return objective(at, grad);
            };
            CHECK_THROWS_WITH(opt.step(x, plain), Catch::Contains("lambda_fsd"));
            CHECK(testing::bitwise_equal(x, x_before));
            CHECK(scaltra::bitwise_equal(opt.state(), before));
            CHECK(scaltra::bitwise_equal(opt.meta_optimizer()->state(), meta_before));
        };
        check(apo);
        check(apop);
    }
}

TEST_CASE("APO refuses a learning rate η₀e^φ that overflows, in a state or from a meta-step",
          "[apo]") {
    const scaltra::problems::Sphere<float> f(4);
    // φ = 100 is finite, but 0.01·e^100 is not a float.
    scaltra::Apo<float> apo(4, {.base = {.lr = 0.01f}, .interval = 1, .lambda_wsd = 0});
    const auto before = apo.state();
    auto state = before;
    state.phi[0] = 100;
    CHECK_THROWS_WITH(apo.set_state(state), Catch::Contains("phi") && Catch::Contains("η₀e^φ"));
    std::stringstream saved;
    scaltra::save_state<float>(saved, apo.name(), state);
    apo.meta_optimizer()->save(saved);
    CHECK_THROWS_AS(apo.load(saved), scaltra::CorruptState);
    CHECK(scaltra::bitwise_equal(apo.state(), before));

    // A meta-step of 1e3 on φ (Adam's first step is ±lr; a larger η lowers Q on
    // the sphere when η is this small) leaves φ finite and η infinite: the move
    // throws before x moves.
    scaltra::Apo<float> leaping(
        4, {.base = {.lr = 0.01f}, .interval = 1, .lambda_wsd = 0, .meta = {.lr = 1e3f}});
    Vec<float> x = Vec<float>::Ones(4);
    const Vec<float> x_before = x;
    CHECK_THROWS_WITH(leaping.step(x, f), Catch::Contains("diverged"));
    CHECK(std::isfinite(leaping.state().phi[0]));
    CHECK(leaping.state().phi[0] > 88);
    CHECK(testing::bitwise_equal(x, x_before));
}

TEST_CASE("APO in the drivers: look-aheads are counted, not reported as the step's loss",
          "[apo][train]") {
    const scaltra::problems::IllConditionedQuadratic<double> f(8, 10.0, 3);
    scaltra::Apo<double> opt(8, {.base = {.lr = 0.05}, .interval = 2, .lambda_wsd = 0.1});
    Vec<double> x = f.initial_point();
    struct Seen {
        int evaluations = 0;
        std::vector<double> losses;
        void on_evaluate(const scaltra::Apo<double>&, const scaltra::Progress<double>&,
                         const Eigen::Ref<const Vec<double>>&, Eigen::Ref<Vec<double>>) {
            ++evaluations;
        }
        void on_step(const scaltra::Apo<double>&, const scaltra::Progress<double>& p,
                     const Eigen::Ref<const Vec<double>>&) {
            losses.push_back(p.loss);
        }
    } seen;
    std::ostringstream csv;
    const auto result = scaltra::minimize(opt, f, x, {.max_iterations = 6, .gradient_tolerance = 0},
                                          seen, scaltra::CsvLogger(csv));
    CHECK(result.iterations == 6);
    CHECK(result.objective_calls == 6 + 3 + 1);  // steps, look-aheads (0, 2, 4), the final point
    CHECK(seen.evaluations == 6 + 1);
    // The step's loss is the loss at the point it started from.
    scaltra::Apo<double> replay(8, {.base = {.lr = 0.05}, .interval = 2, .lambda_wsd = 0.1});
    Vec<double> y = f.initial_point();
    for (double loss : seen.losses)
        CHECK(replay.step(y, f) == loss);
    CHECK(csv.str().find("iteration,loss,gradient_norm,elapsed_seconds,lr\n") == 0);
    const std::string text = csv.str();
    const std::string last = text.substr(text.rfind('\n', text.size() - 2) + 1);
    CHECK(std::stod(last.substr(last.rfind(',') + 1)) == Approx(opt.lr()).epsilon(1e-5));
}

TEST_CASE("fit gives APO the function-space term on a second shuffle of the training set",
          "[apo][fit]") {
    Classification<float> p;
    scaltra::data::LabelledSet<float> train{p.inputs, p.labels};
    scaltra::Apo<float> with_fsd(
        p.model.layout(),
        {.base = {.lr = 0.1f, .momentum = 0.9f}, .interval = 1, .lambda_fsd = 1.0f});
    scaltra::Apo<float> without(p.model.layout(),
                                {.base = {.lr = 0.1f, .momentum = 0.9f}, .interval = 1});
    Vec<float> a = p.w0, b = p.w0;
    const scaltra::FitOptions<float> options{.epochs = 3, .batch_size = 4, .seed = 2};
    const auto ra = scaltra::fit(p.model, with_fsd, a, train, options);
    const auto rb = scaltra::fit(p.model, without, b, train, options);
    CHECK(ra.iterations == 9);
    CHECK(rb.iterations == 9);
    CHECK(with_fsd.lr() != without.lr());  // the term changed the meta-gradient
    CHECK(std::isfinite(with_fsd.lr()));
}

TEST_CASE("APO-P's per-block learning rate names the block index asked for", "[optim][state]") {
    const auto layout = scaltra::Layout().add("W", 3, 2).add("bias", 3);
    scaltra::ApoP<double> apop(layout, {});
    CHECK(apop.lr(1) == Approx(apop.options().lr));
    CHECK_THROWS_WITH(apop.lr(2), Catch::Contains("Block index 2 out of range"));
}

// The suites every optimizer passes, and the learned optimizers' (φ's blocks), over
// APO and APO-P in float and double.
SCALTRA_CROSS_OPTIMIZER_SUITES(testing::ApoCases)
SCALTRA_PHI_BLOCKS_SUITE(testing::ApoCases)
