// optim/scaltra.hpp and optim/online_meta.hpp: the checks S1–S5 of ALGORITHMS.md
// in float and double, the closed-form hypergradient against the tape and central
// differences, and a custom learned rule through the same online loop.
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <scaltra/autodiff.hpp>
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

/// Two blocks, so that per-block quantities are exercised.
scaltra::Layout two_blocks() {
    scaltra::Layout layout;
    layout.add("W", 3, 4).add("b", 3);
    return layout;
}

/// Blocks whose per-matrix curvatures take each path: V (5×3) by Woodbury,
/// W (3×4) by a 3×3 Cholesky, b a vector.
scaltra::Layout mixed_blocks() {
    scaltra::Layout layout;
    layout.add("V", 5, 3).add("W", 3, 4).add("b", 3);
    return layout;
}

using RuleOptions = scaltra::ScaltraOptions<double>;

/// Options that between them take every path of the solves: rank one (Sherman–
/// Morrison), rank 2 (Woodbury), rank 4 (b's 3×3 dense solve), per matrix, L2, L1.
std::vector<std::pair<std::string, RuleOptions>> path_cases() {
    using scaltra::Curvature;
    return {{"rank 1", {}},
            {"rank 2", {.rank = 2}},
            {"rank 4", {.rank = 4}},
            {"per matrix", {.curvature = Curvature::per_matrix}},
            {"per matrix, rank 2", {.curvature = Curvature::per_matrix, .rank = 2}},
            {"rank 1, L2", {.l2 = 0.3}},
            {"rank 2, L1", {.rank = 2, .l1 = 0.5}},
            {"per matrix, L1 and L2", {.curvature = Curvature::per_matrix, .l2 = 0.3, .l1 = 0.5}}};
}

/// A SCALTRA rule and a state with random B, ρ, m (and x_prev) (double, for the checks).
struct RuleAtRandomPoint {
    using Rule = scaltra::detail::ScaltraRule<double, scaltra::AdamOptions<double>>;
    scaltra::Layout layout;
    Rule rule;
    Rule::State state;

    explicit RuleAtRandomPoint(std::uint64_t seed, const RuleOptions& options = {},
                               scaltra::Layout blocks = mixed_blocks())
        : layout(std::move(blocks)), rule(layout, options), state(rule.initial_state()) {
        scaltra::Rng rng(seed);
        state.phi = rng.normal_vector<double>(state.phi.size());  // B ~ N(0, 1), ρ ~ N(0, 1)
        state.m = rng.normal_vector<double>(layout.size());
        state.x_prev = rng.normal_vector<double>(state.x_prev.size());  // only with a penalty
        state.gamma = 0.7;
    }
    /// Δ(φ) = x after a move from x = 0 (the move starts from x_prev: x only adds Δ).
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

TEST_CASE(
    "S2: Sherman–Morrison, Woodbury and Cholesky steps, penalties too, equal a dense "
    "solve",
    "[scaltra]") {
    int thresholded = 0, active = 0;  // with L1: both sides of the threshold are taken
    for (const auto& [name, options] : path_cases()) {
        INFO(name);
        RuleAtRandomPoint p(1, options);
        const Vec<double> delta = p.delta(p.state.phi);
        for (std::size_t l = 0; l < p.layout.num_blocks(); ++l) {
            // The independent formula: d = (B Bᵀ + (τ + λ₂)I)⁻¹(m + λ₂x_prev) by a dense
            // LDLT, over W's columns (per matrix) or the whole block; Δ = −γd, or with
            // L1 Δ = γ(soft(x_prev − d, λ₁/(τ + λ₂)) − x_prev).
            const scaltra::Block& block = p.layout[l];
            const scaltra::Block& bb = p.rule.meta_layout()[2 * l];
            const Mat<double> B = scaltra::block_view(p.state.phi, bb);
            const double t = p.rule.tau(p.state, l) + options.l2;
            const Mat<double> A = B * B.transpose() + t * Mat<double>::Identity(bb.rows, bb.rows);
            const Vec<double> x_prev =
                options.l1 > 0 || options.l2 > 0
                    ? Vec<double>(p.state.x_prev.segment(block.offset, block.size()))
                    : Vec<double>::Zero(block.size());
            const Vec<double> v =
                p.state.m.segment(block.offset, block.size()) + options.l2 * x_prev;
            const Mat<double> V =
                Eigen::Map<const Mat<double>>(v.data(), bb.rows, block.size() / bb.rows);
            const Mat<double> D = A.ldlt().solve(V);
            const Vec<double> d = Eigen::Map<const Vec<double>>(D.data(), block.size());
            Vec<double> expected = -p.state.gamma * d;
            if (options.l1 > 0) {
                const double kappa = options.l1 / t;
                for (Index i = 0; i < block.size(); ++i) {
                    const double z = x_prev[i] - d[i];
                    const double soft = std::abs(z) > kappa ? z - std::copysign(kappa, z) : 0.0;
                    expected[i] = p.state.gamma * (soft - x_prev[i]);
                    thresholded += soft == 0.0;
                    active += soft != 0.0;
                }
            }
            CHECK(delta.segment(block.offset, block.size()).isApprox(expected, 1e-12));
        }
    }
    CHECK(thresholded > 0);
    CHECK(active > 0);
    // A long block at rank 3 (StreamingWoodbury over three pieces): A d = v.
    scaltra::Layout long_block;
    long_block.add("w", 1300);
    RuleAtRandomPoint r(4, {.rank = 3}, long_block);
    const Vec<double> d = -r.delta(r.state.phi) / r.state.gamma;
    const Mat<double> B = scaltra::block_view(r.state.phi, r.rule.meta_layout()[0]);
    const Vec<double> Ad = B * (B.transpose() * d) + r.rule.tau(r.state, 0) * d;
    CHECK(Ad.isApprox(r.state.m, 1e-12));

    RuleAtRandomPoint q(1, {.curvature = scaltra::Curvature::per_matrix});
    CHECK(q.rule.is_matrix(0));
    CHECK(q.rule.is_matrix(1));
    CHECK(!q.rule.is_matrix(2));  // the bias keeps the low-rank curvature
}

TEST_CASE("S3: the closed-form hypergradient equals the tape's and central differences",
          "[scaltra]") {
    for (const auto& [name, options] : path_cases()) {
        INFO(name);
        RuleAtRandomPoint p(2, options);
        scaltra::Rng rng(3);
        const Vec<double> g = rng.normal_vector<double>(p.layout.size());
        Vec<double> closed(p.state.phi.size()), taped = Vec<double>::Zero(p.state.phi.size());
        p.rule.hypergradient(p.state, g, closed);
        scaltra::ad::Tape<double> tape;
        tape.vjp(p.rule.record(tape, p.state, taped.data()), g);
        CHECK(closed.isApprox(taped, 1e-12));
        const Vec<double> recorded = p.rule.record(tape, p.state, nullptr).value();
        CHECK(p.delta(p.state.phi).isApprox(recorded, 1e-12));
        // J_Δᵀg = ∇_φ ⟨g, Δ(φ)⟩, by central differences.
        for (Index i = 0; i < p.state.phi.size(); ++i) {
            Vec<double> up = p.state.phi, down = p.state.phi;
            up[i] += 1e-6;
            down[i] -= 1e-6;
            const double fd = (g.dot(p.delta(up)) - g.dot(p.delta(down))) / 2e-6;
            CHECK(closed[i] == Approx(fd).margin(1e-7));
        }
    }
}

TEMPLATE_TEST_CASE("S3: the closed form and the tape take the same trajectory", "[scaltra]", float,
                   double) {
    using S = TestType;
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
    // Rank 2, Woodbury and Cholesky blocks, L1 and L2 at once.
    scaltra::ScaltraOptions<S> everything{.alpha0 = S(0.1),
                                          .curvature = scaltra::Curvature::per_matrix,
                                          .rank = 2,
                                          .l2 = S(0.01),
                                          .l1 = S(0.01),
                                          .meta = {.lr = S(1e-2)}};
    auto everything_taped = everything;
    everything_taped.hypergradient = scaltra::Hypergradient::tape;
    const scaltra::problems::IllConditionedQuadratic<S> r(30, 10.0, 4);
    scaltra::Scaltra<S> e(mixed_blocks(), everything), k(mixed_blocks(), everything_taped);
    Vec<S> xe = r.initial_point(), xk = xe;
    for (int t = 0; t < 30; ++t) {
        e.step(xe, r);
        k.step(xk, r);
    }
    CHECK((xe - xk).norm() <= tol * xe.norm());
    CHECK((e.state().phi - k.state().phi).norm() <= tol * e.state().phi.norm());
}

TEMPLATE_TEST_CASE("SCALTRA's fused step equals the separate steps", "[scaltra]", float, double) {
    // m, γ and the meta-optimizer's moments come out bit for bit. φ and x agree to
    // rounding: Eigen's vectorised float square root (EIGEN_FAST_MATH) is not
    // exact, and where a piece of the meta-step starts decides which elements
    // take it.
    using S = TestType;
    using Rule = scaltra::detail::ScaltraRule<S, scaltra::AdamOptions<S>>;
    scaltra::Layout layout;
    layout.add("W", 40, 30).add("b", 40);  // 1200 elements: pieces of 512, 512 and 176
    scaltra::Rng rng(12);
    const Vec<S> g = rng.normal_vector<S>(layout.size());
    const Vec<S> x0 = rng.normal_vector<S>(layout.size());
    for (const scaltra::AdamOptions<S>& meta_options :
         {scaltra::AdamOptions<S>{.lr = S(1e-2)},
          scaltra::AdamOptions<S>{.lr = S(1e-2), .weight_decay = S(0.1), .amsgrad = true}}) {
        const Rule rule(layout, {});
        auto separate = rule.initial_state();
        separate.phi = rng.normal_vector<S>(separate.phi.size());
        separate.m = rng.normal_vector<S>(layout.size());
        separate.step = 3;
        auto fused = separate;
        scaltra::Adam<S> meta_separate(rule.meta_layout(), meta_options);
        Vec<S> warm = rng.normal_vector<S>(separate.phi.size()), warm_phi = separate.phi;
        meta_separate.update(warm_phi, warm);  // non-zero moments
        scaltra::Adam<S> meta_fused = meta_separate;
        Vec<S> x_separate = x0, x_fused = x0, h(separate.phi.size());
        rule.hypergradient(separate, g, h);  // what OnlineMeta runs without the fusion
        meta_separate.update(separate.phi, h);
        rule.observe(separate, x_separate, g);
        rule.move(separate, x_separate);
        REQUIRE(rule.fused_apply(fused, meta_fused, x_fused, g));
        const S tol = std::is_same_v<S, float> ? S(1e-6) : S(1e-14);
        CHECK((x_fused - x_separate).norm() <= tol * x_separate.norm());
        CHECK((fused.phi - separate.phi).norm() <= tol * separate.phi.norm());
        CHECK(fused.m == separate.m);
        CHECK(fused.gamma == separate.gamma);
        CHECK(scaltra::bitwise_equal(meta_fused.state(), meta_separate.state()));

        // Before the first move, or when h might overflow: not fused, nothing changed.
        auto fresh = rule.initial_state();
        const auto fresh_before = fresh;
        CHECK_FALSE(rule.fused_apply(fresh, meta_fused, x_fused, g));
        const Vec<S> huge = g * (std::numeric_limits<S>::max() / S(8));
        const auto before = fused;
        const auto meta_before = meta_fused.state();
        const Vec<S> x_before = x_fused;
        CHECK_FALSE(rule.fused_apply(fused, meta_fused, x_fused, huge));
        CHECK(scaltra::bitwise_equal(fused, before));
        CHECK(scaltra::bitwise_equal(fresh, fresh_before));
        CHECK(scaltra::bitwise_equal(meta_fused.state(), meta_before));
        CHECK(x_fused == x_before);
    }
    // Rank 2, per matrix or a penalty: not fused, and nothing changed.
    for (const scaltra::ScaltraOptions<S>& options :
         {scaltra::ScaltraOptions<S>{.rank = 2},
          scaltra::ScaltraOptions<S>{.curvature = scaltra::Curvature::per_matrix},
          scaltra::ScaltraOptions<S>{.l2 = S(0.1)}}) {
        const Rule rule(layout, options);
        auto state = rule.initial_state();
        state.step = 1;
        const auto before = state;
        scaltra::Adam<S> meta(rule.meta_layout());
        Vec<S> x = x0;
        CHECK_FALSE(rule.fused_apply(state, meta, x, g));
        CHECK(scaltra::bitwise_equal(state, before));
        CHECK(meta.state().step == 0);
        CHECK(x == x0);
    }
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
    rule.observe(state, w, H * w);  // β = 0: m = g
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
    rule.observe(state, w, gradient());
    rule.move(state, w);
    const S tol = std::is_same_v<S, float> ? S(1e-4) : S(1e-10);
    CHECK(w.norm() < tol);
    Vec<S> h(16);
    rule.hypergradient(state, gradient(), h);
    CHECK(h.norm() < tol);
}

TEMPLATE_TEST_CASE("SCALTRA's penalties reach the penalised minimiser", "[scaltra]", float,
                   double) {
    // L(w) = ½‖w − c‖²: with (λ₂/2)‖w‖² the minimiser is c/(1 + λ₂), with λ₁‖w‖₁
    // soft(c, λ₁), with both soft(c, λ₁)/(1 + λ₂) (the closed forms of the prox).
    // L2 is exact for any B. The L1 step thresholds in the τ-metric, whose fixed
    // point is exact only where B Bᵀ does not couple the signs (README, "SCALTRA"),
    // so with L1 B stays 0 (b_scale 0: its hypergradient is then 0) while τ learns.
    using S = TestType;
    const Index n = 12;
    scaltra::Rng rng(9);
    const Vec<S> c = rng.normal_vector<S>(n);
    const auto f = [&](const Eigen::Ref<const Vec<S>>& w, Eigen::Ref<Vec<S>> g) {
        g = w - c;
        return S(0.5) * g.squaredNorm();
    };
    for (const auto& [l2, l1] : {std::pair{S(0.5), S(0)}, {S(0), S(0.4)}, {S(0.5), S(0.4)}}) {
        INFO("λ₂ = " << l2 << ", λ₁ = " << l1);
        scaltra::Scaltra<S> opt(
            n, {.b_scale = l1 > 0 ? S(0) : S(1e-3), .rank = 2, .l2 = l2, .l1 = l1});
        Vec<S> w = Vec<S>::Zero(n);
        for (int t = 0; t < 400; ++t)
            opt.step(w, f);
        const Vec<S> expected =
            (c.array().sign() * (c.array().abs() - l1).max(S(0))).matrix() / (1 + l2);
        CHECK((w - expected).cwiseAbs().maxCoeff() < S(1e-4));
        if (l1 > 0) {
            REQUIRE((expected.array() == 0).count() >= 2);  // the threshold zeroes some
            CHECK(opt.tau(0) != Approx(1 / S(0.5)));        // and τ was learned
        }
    }
}

TEST_CASE("a solve that overflows takes the isotropic step v/τ′, not NaN", "[scaltra]") {
    using Rule = scaltra::detail::ScaltraRule<float, scaltra::AdamOptions<float>>;
    for (const scaltra::ScaltraOptions<float>& options :
         {scaltra::ScaltraOptions<float>{}, scaltra::ScaltraOptions<float>{.rank = 2},
          scaltra::ScaltraOptions<float>{.curvature = scaltra::Curvature::per_matrix}}) {
        const Rule rule(mixed_blocks(), options);
        auto state = rule.initial_state();
        state.phi.setConstant(1e20f);  // Bᵀm overflows float
        state.m.setConstant(1e25f);
        state.gamma = 0.5f;
        for (std::size_t l = 0; l < 3; ++l)
            state.phi[rule.meta_layout()[2 * l + 1].offset] = 0.0f;  // ρ = 0
        Vec<float> x = Vec<float>::Zero(state.m.size());
        rule.move(state, x);
        REQUIRE(x.allFinite());
        for (std::size_t l = 0; l < 3; ++l) {
            const scaltra::Block block = mixed_blocks()[l];
            const float expected = -0.5f * 1e25f / rule.tau(state, l);
            CHECK(x.segment(block.offset, block.size()).isApproxToConstant(expected, 1e-6f));
        }
        Vec<float> h(state.phi.size());
        rule.hypergradient(state, Vec<float>::Ones(state.m.size()), h);
        CHECK(h.allFinite());
        CHECK(h[0] == 0.0f);  // B played no part in the step
    }
}

TEMPLATE_TEST_CASE("S5: τ stays positive and nothing turns NaN under huge meta-steps", "[scaltra]",
                   float, double) {
    using S = TestType;
    const scaltra::problems::Rosenbrock<S> f(12);
    scaltra::Layout layout;
    layout.add("W", 4, 3);  // per matrix: Woodbury through a 3×3 factor
    for (const auto curvature : {scaltra::Curvature::low_rank, scaltra::Curvature::per_matrix})
        for (const Index rank : {1, 3}) {
            INFO("curvature " << static_cast<int>(curvature) << ", rank " << rank);
            scaltra::Scaltra<S> opt(layout, {.alpha0 = S(1e-3),
                                             .b_scale = S(1),
                                             .curvature = curvature,
                                             .rank = rank,
                                             .meta = {.lr = S(1e3)}});
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
}

TEST_CASE("a state whose γ the SCA rule would turn negative is refused", "[scaltra]") {
    // Saved under ε = 1e-3, resumed under ε = 0.5: γ = 3 would become 3(1 − 1.5) < 0.
    scaltra::Scaltra<double> opt(3, {.gamma0 = 1, .epsilon = 0.5});
    const auto before = opt.state();
    auto state = before;
    state.gamma = 3;
    CHECK_THROWS_WITH(opt.set_state(state), Catch::Contains("gamma")
                                                && Catch::Contains("ε·γ < 1"));
    CHECK(scaltra::bitwise_equal(opt.state(), before));
    std::stringstream saved;
    scaltra::save_state<double>(saved, opt.name(), state);
    opt.meta_optimizer()->save(saved);
    CHECK_THROWS_AS(opt.load(saved), scaltra::CorruptState);
    CHECK(scaltra::bitwise_equal(opt.state(), before));
    // The geometric rule has no such bound.
    scaltra::Scaltra<double> geometric(3,
                                       {.gamma0 = 1, .gamma_rule = scaltra::GammaRule::geometric});
    auto g_state = geometric.state();
    g_state.gamma = 3;
    geometric.set_state(g_state);
    CHECK(geometric.state().gamma == 3);
}

TEST_CASE("SCALTRA: save and load mid-run restore the meta-optimizer too", "[scaltra]") {
    const scaltra::problems::Rosenbrock<double> f(4);
    scaltra::Scaltra<double> a(4, {.alpha0 = 1e-3, .meta = {.lr = 1e-2}});
    Vec<double> xa = f.initial_point();
    for (int t = 0; t < 10; ++t)
        a.step(xa, f);
    scaltra::Scaltra<double> b(4, {.alpha0 = 1e-3, .meta = {.lr = 1e-2}});
    testing::check_resumes_bit_identically(a, b, f, xa, 10);
    CHECK(scaltra::bitwise_equal(a.meta_optimizer()->state(), b.meta_optimizer()->state()));

    // A file cut inside the meta-optimizer's state: nothing changes.
    std::stringstream again;
    a.save(again);
    const std::string bytes = again.str();
    const auto before = b.state();
    const auto meta_before = b.meta_optimizer()->state();
    std::istringstream cut(bytes.substr(0, bytes.size() - 5));
    CHECK_THROWS_AS(b.load(cut), scaltra::CorruptState);
    CHECK(scaltra::bitwise_equal(b.state(), before));
    CHECK(scaltra::bitwise_equal(b.meta_optimizer()->state(), meta_before));

    // With a penalty the state keeps x_prev: resuming is exact, and a state saved
    // without one does not fit.
    const scaltra::ScaltraOptions<double> penalised{.alpha0 = 1e-3, .l2 = 0.1, .l1 = 0.01};
    scaltra::Scaltra<double> c(4, penalised), d(4, penalised);
    Vec<double> xc = f.initial_point();
    for (int t = 0; t < 10; ++t)
        c.step(xc, f);
    testing::check_resumes_bit_identically(c, d, f, xc, 10);
    std::stringstream plain_saved;
    a.save(plain_saved);
    const auto d_before = d.state();
    CHECK_THROWS_WITH(d.load(plain_saved), Catch::Contains("x_prev"));
    CHECK(scaltra::bitwise_equal(d.state(), d_before));

    // Rank one and per matrix lay φ out in the same shapes: the curvature tells them apart.
    scaltra::Scaltra<double> low_rank(two_blocks());
    scaltra::Scaltra<double> per_matrix(two_blocks(),
                                        {.curvature = scaltra::Curvature::per_matrix});
    std::stringstream low_rank_saved;
    low_rank.save(low_rank_saved);
    const auto per_matrix_before = per_matrix.state();
    CHECK_THROWS_WITH(per_matrix.load(low_rank_saved), Catch::Contains("other Curvature"));
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
    void observe(State& state, const Eigen::Ref<const Vec<double>>&,
                 const Eigen::Ref<const Vec<double>>& g) const {
        state.g = g;
    }
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
        const auto meta_before = opt.meta_optimizer()->state();
        const Vec<float> x_before = x;
        // Finite, but gᵀm overflows float: the hypergradient of τ is infinite.
        const Vec<float> huge = Vec<float>::Constant(100, 1e38f);
        if (policy == scaltra::NonFinitePolicy::raise)
            CHECK_THROWS_WITH(opt.update(x, huge), Catch::Contains("hypergradient is not finite"));
        else
            opt.update(x, huge);
        CHECK(x == x_before);
        CHECK(scaltra::bitwise_equal(opt.state(), before));
        CHECK(scaltra::bitwise_equal(opt.meta_optimizer()->state(), meta_before));
    }
}

TEST_CASE("SCALTRA's phi blocks b:<block> and rho:<block> are its b and rho", "[optim][state]") {
    const auto layout = scaltra::Layout().add("W", 3, 2).add("bias", 3);
    scaltra::Scaltra<double> opt(layout,
                                 {.alpha0 = 0.5, .curvature = scaltra::Curvature::per_matrix});
    auto state = opt.state();
    const Vec<double> b = Vec<double>::LinSpaced(3, -1.0, 2.0);
    scaltra::block_view(state.phi, opt.meta_layout().at("b:bias")) = b;
    scaltra::block_view(state.phi, opt.meta_layout().at("rho:bias"))(0) = 0.7;
    opt.set_state(std::move(state));
    CHECK(opt.b_norm(1) == Approx(b.norm()).epsilon(1e-15));
    CHECK(opt.tau(1) == Approx(std::log1p(std::exp(0.7)) + opt.options().tau_min).epsilon(1e-15));
    // Under per_matrix, a matrix block's factor is "B:W", of W's shape.
    CHECK(opt.meta_layout().at("B:W").rows == 3);
    CHECK(opt.meta_layout().at("B:W").cols == 2);
    // Per-block getters name the block index asked for, not φ's.
    CHECK_THROWS_WITH(opt.tau(2), Catch::Contains("Block index 2 out of range"));
    CHECK_THROWS_AS(opt.b_norm(5), scaltra::InvalidArgument);
    CHECK_THROWS_AS(opt.effective_step(2), scaltra::InvalidArgument);
}

// The suites every optimizer passes, and the learned optimizers' (φ's blocks), over
// SCALTRA in float and double.
SCALTRA_CROSS_OPTIMIZER_SUITES(testing::ScaltraCases)
SCALTRA_PHI_BLOCKS_SUITE(testing::ScaltraCases)
