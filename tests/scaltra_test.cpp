// optim/scaltra.hpp and optim/online_meta.hpp: the checks S1–S5 of ALGORITHMS.md
// in float and double, the closed-form hypergradient against the tape and central
// differences, and a custom learned rule through the same online loop.
#include <array>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <scaltra/autodiff.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>
#include <scaltra/train.hpp>

#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;

namespace {

/// Two blocks, so that per-block quantities are exercised.
scaltra::Layout two_blocks() {
    scaltra::Layout layout;
    layout.add("W", 3, 4).add("b", 3);
    return layout;
}

/// A SCALTRA rule and a state with random b, ρ and m (double, for the checks).
struct RuleAtRandomPoint {
    using Rule = scaltra::detail::ScaltraRule<double, scaltra::AdamOptions<double>>;
    scaltra::Layout layout = two_blocks();
    Rule rule;
    Rule::State state;

    explicit RuleAtRandomPoint(std::uint64_t seed,
                               scaltra::Curvature curvature = scaltra::Curvature::rank_one)
        : rule(layout, {.curvature = curvature}), state(rule.initial_state()) {
        scaltra::Rng rng(seed);
        state.phi = rng.normal_vector<double>(state.phi.size());  // b ~ N(0, 1), ρ ~ N(0, 1)
        state.m = rng.normal_vector<double>(layout.size());
        state.gamma = 0.7;
    }
    /// Δ(φ) = x after a move from x = 0.
    Vec<double> delta(const Vec<double>& phi) const {
        auto at = state;
        at.phi = phi;
        Vec<double> x = Vec<double>::Zero(layout.size());
        rule.move(at, x);
        return x;
    }
};

}  // namespace

TEMPLATE_TEST_CASE("S1: b = 0, fixed τ = 1/η, γ ≡ 1 and meta-lr 0 is EMA momentum SGD", "[scaltra]",
                   float, double) {
    using S = TestType;
    const S eta = S(0.05), beta = S(0.9);
    scaltra::Scaltra<S> opt(
        two_blocks(),
        {.alpha0 = eta, .beta = beta, .gamma0 = 1, .epsilon = 0, .b_scale = 0, .meta = {.lr = 0}});
    const scaltra::problems::IllConditionedQuadratic<S> f(15, 10.0, 3);
    Vec<S> x = f.initial_point(), y = x, m = Vec<S>::Zero(15), g(15);
    for (int t = 0; t < 30; ++t) {
        opt.step(x, f);
        f(y, g);  // the independent formula: m ← βm + (1−β)g, y ← y − ηm
        m = beta * m + (1 - beta) * g;
        y -= eta * m;
    }
    const S tol = std::is_same_v<S, float> ? S(1e-5) : S(1e-12);
    CHECK((x - y).norm() <= tol * y.norm());
    CHECK(opt.tau(0) == Approx(1 / eta).epsilon(tol));
    CHECK(opt.b_norm(0) == 0);
}

TEST_CASE("S2: the Sherman–Morrison and Cholesky steps equal a dense solve", "[scaltra]") {
    RuleAtRandomPoint p(1);
    const Vec<double> delta = p.delta(p.state.phi);
    for (std::size_t l = 0; l < p.layout.num_blocks(); ++l) {
        const scaltra::Block& block = p.layout[l];
        const scaltra::Block& bb = p.rule.meta_layout()[2 * l];
        const Vec<double> b = p.state.phi.segment(bb.offset, bb.size());
        const Mat<double> A =
            b * b.transpose() + p.rule.tau(p.state, l) * Mat<double>::Identity(b.size(), b.size());
        const Vec<double> d =
            A.ldlt().solve(Vec<double>(p.state.m.segment(block.offset, block.size())));
        CHECK(delta.segment(block.offset, block.size()).isApprox(-p.state.gamma * d, 1e-12));
    }
    // The per-matrix curvature: W's columns share A = B Bᵀ + τI (3×3), B of W's shape.
    RuleAtRandomPoint q(1, scaltra::Curvature::per_matrix);
    REQUIRE(q.rule.is_matrix(0));
    REQUIRE(!q.rule.is_matrix(1));  // the bias keeps rank one
    const Vec<double> dq = q.delta(q.state.phi);
    const Mat<double> B = scaltra::block_view(q.state.phi, q.rule.meta_layout()[0]);
    const Mat<double> A = B * B.transpose() + q.rule.tau(q.state, 0) * Mat<double>::Identity(3, 3);
    const Mat<double> M = scaltra::block_view(q.state.m, q.layout[0]);
    CHECK(scaltra::block_view(dq, q.layout[0]).isApprox(-q.state.gamma * A.ldlt().solve(M), 1e-12));
}

TEMPLATE_TEST_CASE("S3: the closed-form hypergradient equals the tape's and central differences",
                   "[scaltra]", float, double) {
    using S = TestType;
    for (auto curvature : {scaltra::Curvature::rank_one, scaltra::Curvature::per_matrix}) {
        INFO("curvature " << static_cast<int>(curvature));
        RuleAtRandomPoint p(2, curvature);
        scaltra::Rng rng(3);
        const Vec<double> g = rng.normal_vector<double>(p.layout.size());
        Vec<double> closed(p.state.phi.size()), taped = Vec<double>::Zero(p.state.phi.size());
        p.rule.hypergradient(p.state, g, closed);
        scaltra::ad::Tape<double> tape;
        tape.vjp(p.rule.record(tape, p.state, taped.data()), g);
        CHECK(closed.isApprox(taped, 1e-12));
        // J_Δᵀg = ∇_φ ⟨g, Δ(φ)⟩, by central differences.
        for (Index i = 0; i < p.state.phi.size(); ++i) {
            Vec<double> up = p.state.phi, down = p.state.phi;
            up[i] += 1e-6;
            down[i] -= 1e-6;
            const double fd = (g.dot(p.delta(up)) - g.dot(p.delta(down))) / 2e-6;
            CHECK(closed[i] == Approx(fd).margin(1e-7));
        }
    }
    // The optimizer, in S, with either hypergradient: the same trajectory.
    const scaltra::problems::Rosenbrock<S> f(6);
    scaltra::Scaltra<S> a(6, {.alpha0 = S(1e-3), .meta = {.lr = S(1e-2)}});
    scaltra::Scaltra<S> b(6, {.alpha0 = S(1e-3),
                              .meta = {.lr = S(1e-2)},
                              .hypergradient = scaltra::Hypergradient::tape});
    Vec<S> xa = f.initial_point(), xb = xa;
    for (int t = 0; t < 20; ++t) {
        a.step(xa, f);
        b.step(xb, f);
    }
    const S tol = std::is_same_v<S, float> ? S(1e-4) : S(1e-12);
    CHECK((xa - xb).norm() <= tol * xa.norm());
    CHECK((a.state().phi - b.state().phi).norm() <= tol * a.state().phi.norm());
    CHECK(a.tau(0) != Approx(1e3));  // τ was learned (τ₀ = γ₀/α₀ = 1000)
    // The per-matrix curvature (whose closed form reuses its factor between the
    // move and the next hypergradient) against the tape over many steps.
    const scaltra::problems::IllConditionedQuadratic<S> q(15, 10.0, 2);
    const scaltra::ScaltraOptions<S> per_matrix{
        .alpha0 = S(0.1), .curvature = scaltra::Curvature::per_matrix, .meta = {.lr = S(1e-2)}};
    auto per_matrix_taped = per_matrix;
    per_matrix_taped.hypergradient = scaltra::Hypergradient::tape;
    scaltra::Scaltra<S> c(two_blocks(), per_matrix), d(two_blocks(), per_matrix_taped);
    Vec<S> xc = q.initial_point(), xd = xc;
    for (int t = 0; t < 30; ++t) {
        c.step(xc, q);
        d.step(xd, q);
    }
    CHECK((xc - xd).norm() <= tol * xc.norm());
    CHECK((c.state().phi - d.state().phi).norm() <= tol * c.state().phi.norm());
}

TEMPLATE_TEST_CASE("S4: at the true curvature one step reaches the minimum, hypergradient 0",
                   "[scaltra]", float, double) {
    using S = TestType;
    using Rule = scaltra::detail::ScaltraRule<S, scaltra::AdamOptions<S>>;
    const Index n = 8;
    scaltra::Rng rng(4);
    const Vec<S> b_star = rng.normal_vector<S>(n);
    const S tau_star = S(0.3);
    const Mat<S> H = b_star * b_star.transpose() + tau_star * Mat<S>::Identity(n, n);
    const Rule rule(scaltra::Layout(n), {.beta = 0, .gamma0 = 1, .epsilon = 0});
    auto state = rule.initial_state();
    state.phi.head(n) = b_star;
    state.phi[n] =
        scaltra::detail::softplus_inverse(tau_star - S(1e-6));  // τ = softplus(ρ) + τ_min
    Vec<S> w = rng.normal_vector<S>(n);
    rule.observe(state, H * w);  // β = 0: m = g
    rule.move(state, w);
    const S tol = std::is_same_v<S, float> ? S(1e-4) : S(1e-10);
    CHECK(w.norm() < tol);
    Vec<S> h(n + 1);
    rule.hypergradient(state, H * w, h);
    CHECK(h.norm() < tol);
}

TEMPLATE_TEST_CASE("S4, per matrix: at the true B and τ one step reaches the minimum", "[scaltra]",
                   float, double) {
    using S = TestType;
    using Rule = scaltra::detail::ScaltraRule<S, scaltra::AdamOptions<S>>;
    scaltra::Layout layout;
    layout.add("W", 5, 3);
    const Rule rule(
        layout,
        {.beta = 0, .gamma0 = 1, .epsilon = 0, .curvature = scaltra::Curvature::per_matrix});
    REQUIRE(rule.is_matrix(0));
    scaltra::Rng rng(6);
    auto state = rule.initial_state();
    const Vec<S> b_flat = rng.normal_vector<S>(15);
    const Mat<S> B = Eigen::Map<const Mat<S>>(b_flat.data(), 5, 3);
    const S tau_star = S(0.4);
    const Mat<S> H = B * B.transpose() + tau_star * Mat<S>::Identity(5, 5);  // L = ½⟨W, HW⟩
    state.phi.head(15) = b_flat;
    state.phi[15] = scaltra::detail::softplus_inverse(tau_star - S(1e-6));
    Vec<S> w = rng.normal_vector<S>(15);
    auto gradient = [&] {
        const Mat<S> G = H * Eigen::Map<const Mat<S>>(w.data(), 5, 3);
        return Vec<S>(Eigen::Map<const Vec<S>>(G.data(), 15));
    };
    rule.observe(state, gradient());
    rule.move(state, w);
    const S tol = std::is_same_v<S, float> ? S(1e-4) : S(1e-10);
    CHECK(w.norm() < tol);
    Vec<S> h(16);
    rule.hypergradient(state, gradient(), h);
    CHECK(h.norm() < tol);
}

TEMPLATE_TEST_CASE("S5: τ stays positive and nothing turns NaN under huge meta-steps", "[scaltra]",
                   float, double) {
    using S = TestType;
    const scaltra::problems::Rosenbrock<S> f(10);
    scaltra::Scaltra<S> opt(10, {.alpha0 = S(1e-3), .b_scale = S(1), .meta = {.lr = S(1e3)}});
    Vec<S> x = f.initial_point();
    int steps = 0;
    try {
        for (; steps < 300; ++steps)
            opt.step(x, f);
    } catch (const scaltra::NonFinite&) {
        // The iterate may run off to infinity; the step that saw it changed nothing.
    }
    INFO("steps before a non-finite loss: " << steps);
    CHECK(opt.state().phi.allFinite());
    CHECK(opt.state().m.allFinite());
    CHECK(x.allFinite());
    CHECK(opt.tau(0) > 0);
    CHECK(opt.effective_step(0) > 0);
}

TEST_CASE("SCALTRA: save and load mid-run restore the meta-optimizer too", "[scaltra]") {
    const scaltra::problems::Rosenbrock<double> f(4);
    scaltra::Scaltra<double> a(4, {.alpha0 = 1e-3, .meta = {.lr = 1e-2}});
    Vec<double> xa = f.initial_point();
    for (int t = 0; t < 10; ++t)
        a.step(xa, f);
    std::stringstream saved;
    a.save(saved);
    scaltra::Scaltra<double> b(4, {.alpha0 = 1e-3, .meta = {.lr = 1e-2}});
    b.load(saved);
    CHECK(scaltra::bitwise_equal(a.meta_optimizer().state(), b.meta_optimizer().state()));
    Vec<double> xb = xa;
    for (int t = 0; t < 10; ++t)
        CHECK(a.step(xa, f) == b.step(xb, f));
    CHECK(xa == xb);

    // A file cut inside the meta-optimizer's state: nothing changes.
    std::stringstream again;
    a.save(again);
    const std::string bytes = again.str();
    const auto before = b.state();
    const auto meta_before = b.meta_optimizer().state();
    std::istringstream cut(bytes.substr(0, bytes.size() - 5));
    CHECK_THROWS_AS(b.load(cut), scaltra::CorruptState);
    CHECK(scaltra::bitwise_equal(b.state(), before));
    CHECK(scaltra::bitwise_equal(b.meta_optimizer().state(), meta_before));

    // Rank one and per matrix lay φ out in the same shapes: the curvature tells them apart.
    scaltra::Scaltra<double> rank_one(two_blocks());
    scaltra::Scaltra<double> per_matrix(two_blocks(),
                                        {.curvature = scaltra::Curvature::per_matrix});
    std::stringstream rank_one_saved;
    rank_one.save(rank_one_saved);
    const auto per_matrix_before = per_matrix.state();
    CHECK_THROWS_WITH(per_matrix.load(rank_one_saved), Catch::Contains("other Curvature"));
    CHECK(scaltra::bitwise_equal(per_matrix.state(), per_matrix_before));
}

namespace {

/// A learned per-block learning rate (hypergradient descent, Baydin et al. 2018)
/// in a few lines: Δ = −exp(φ_l)·g_l per block, no closed form, so the loop
/// differentiates it on the tape.
struct LearnedRate {
    using Scalar = double;
    struct State {
        std::int64_t step = 0;
        Vec<double> phi, g;
        static constexpr std::array field_names{"step", "phi", "g"};
        auto fields() { return std::tie(step, phi, g); }
        auto fields() const { return std::tie(step, phi, g); }
    };
    struct Options {
        scaltra::SgdOptions<double> meta{.lr = 0.1};
        scaltra::Hypergradient hypergradient = scaltra::Hypergradient::tape;
        scaltra::NonFinitePolicy on_non_finite = scaltra::NonFinitePolicy::raise;
        void validate() const { meta.validate(); }
    };
    static constexpr std::string_view kName = "learned rate";

    LearnedRate(const scaltra::Layout& layout, const Options&) : layout(layout) {
        for (std::size_t l = 0; l < layout.num_blocks(); ++l)
            rates.add(layout[l].name, 1);
    }
    const scaltra::Layout& meta_layout() const { return rates; }
    State initial_state() const {
        return {0, Vec<double>::Constant(rates.size(), std::log(0.01)),
                Vec<double>::Zero(layout.size())};
    }
    void observe(State& state, const Eigen::Ref<const Vec<double>>& g) const { state.g = g; }
    scaltra::ad::Var<double> record(scaltra::ad::Tape<double>& tape, const State& state,
                                    double* h) const {
        scaltra::ad::Var<double> delta;
        for (std::size_t l = 0; l < layout.num_blocks(); ++l) {
            const auto& block = layout[l];
            auto rate = tape.leaf(state.phi.data() + l, 1, 1, h ? h + l : nullptr);
            auto g = tape.leaf(state.g.data() + block.offset, block.size(), 1);
            auto step = -scaltra::ad::scale(g, scaltra::ad::exp(rate));
            delta = l == 0 ? step : scaltra::ad::concat_rows(delta, step);
        }
        return delta;
    }

    scaltra::Layout layout, rates;
};

}  // namespace

TEST_CASE("a custom learned rule runs through the same online loop", "[scaltra][online]") {
    static_assert(scaltra::LearnedRule<LearnedRate>);
    scaltra::OnlineMeta<LearnedRate, scaltra::Sgd<double>> opt(two_blocks());
    static_assert(scaltra::Optimizer<decltype(opt)>);
    const scaltra::problems::IllConditionedQuadratic<double> f(15, 10.0, 5);
    Vec<double> x = f.initial_point(), g0(15), g1(15);
    f(x, g0);
    opt.step(x, f);  // x₁ = x₀ − 0.01·g₀
    CHECK(x.isApprox(f.initial_point() - 0.01 * g0, 1e-14));
    f(x, g1);
    opt.step(x, f);  // φ_l ← φ_l − 0.1·∂f(x₁)/∂φ_l = φ_l + 0.1·0.01·⟨g₁, g₀⟩_l
    const auto& layout = opt.layout();
    for (std::size_t l = 0; l < 2; ++l) {
        const auto& block = layout[l];
        const double expected = std::log(0.01)
                                + 0.1 * 0.01
                                      * g1.segment(block.offset, block.size())
                                            .dot(g0.segment(block.offset, block.size()));
        CHECK(opt.state().phi[static_cast<Index>(l)] == Approx(expected).epsilon(1e-12));
    }
}

TEST_CASE("SCALTRA's learned τ, ‖b‖ and γ/τ reach callbacks and the CSV logger", "[scaltra]") {
    const scaltra::problems::IllConditionedQuadratic<double> f(15, 10.0, 5);
    scaltra::Scaltra<double> opt(two_blocks(), {.alpha0 = 0.1, .meta = {.lr = 1e-2}});
    Vec<double> x = f.initial_point();
    std::ostringstream csv;
    scaltra::minimize(opt, f, x, {.max_iterations = 5}, scaltra::CsvLogger(csv));
    const std::string text = csv.str();
    CHECK_THAT(text, Catch::StartsWith("iteration,loss,gradient_norm,elapsed_seconds,tau:W,"
                                       "b_norm:W,step:W,tau:b,b_norm:b,step:b\n"));
    // The last line ends with block b's γ/τ as the optimizer reports it now.
    const std::string last = text.substr(text.rfind('\n', text.size() - 2) + 1);
    const double logged_step = std::stod(last.substr(last.rfind(',') + 1));
    CHECK(logged_step == Approx(opt.effective_step(1)).epsilon(1e-5));
    CHECK(opt.effective_step(0) == Approx(opt.state().gamma / opt.tau(0)));
    CHECK(opt.b_norm(0) > 0);
}

TEST_CASE("a non-finite hypergradient raises or skips, leaving x and the state untouched",
          "[scaltra]") {
    const scaltra::problems::Sphere<float> f(100);
    for (auto policy : {scaltra::NonFinitePolicy::raise, scaltra::NonFinitePolicy::skip}) {
        scaltra::Scaltra<float> opt(100, {.on_non_finite = policy});
        Vec<float> x = f.initial_point();
        opt.step(x, f);
        const auto before = opt.state();
        const auto meta_before = opt.meta_optimizer().state();
        const Vec<float> x_before = x;
        // Finite, but gᵀm overflows float: the hypergradient of τ is infinite.
        const Vec<float> huge = Vec<float>::Constant(100, 1e38f);
        if (policy == scaltra::NonFinitePolicy::raise)
            CHECK_THROWS_WITH(opt.update(x, huge), Catch::Contains("hypergradient is not finite"));
        else
            opt.update(x, huge);
        CHECK(x == x_before);
        CHECK(scaltra::bitwise_equal(opt.state(), before));
        CHECK(scaltra::bitwise_equal(opt.meta_optimizer().state(), meta_before));
    }
}
