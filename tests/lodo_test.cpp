// optim/lodo.hpp: the checks L1, L2, L4 and L5 of ALGORITHMS.md, and save/load.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <sstream>
#include <tuple>
#include <type_traits>
#include <utility>

#include <Eigen/Eigenvalues>

#include <scaltra/autodiff.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "cross_optimizer_suites.hpp"
#include "resume_check.hpp"
#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;

namespace {

using Rule = scaltra::detail::LodoRule<double, scaltra::AdamOptions<double>>;

/// G(θ) column by column: Δ = −G m for m = e_j.
Mat<double> implicit_G(const Rule& rule, Rule::State state, Index n) {
    Mat<double> G(n, n);
    scaltra::ad::Tape<double> tape;
    for (Index j = 0; j < n; ++j) {
        state.m = Vec<double>::Unit(n, j);
        tape.clear();
        G.col(j) = -Vec<double>(rule.record(tape, state, nullptr).value());
    }
    return G;
}

}  // namespace

TEST_CASE("L4: LODO's hidden width and meta-parameter count", "[lodo]") {
    CHECK(Rule(scaltra::Layout(7), {.form = scaltra::LodoForm::diagonal}).meta_layout().size()
          == 7);
    CHECK(Rule(scaltra::Layout(7), {.form = scaltra::LodoForm::global}).meta_layout().size() == 1);
    CHECK(Rule::hidden_width(10, 4) == 24);  // 2n + k − (2n mod k), 2n a multiple of k
    CHECK(Rule::hidden_width(7, 4) == 16);
    CHECK(Rule::hidden_width(100, 4) == 204);
    const Rule rule(scaltra::Layout(7), {.layers = 5, .block = 4});
    CHECK(rule.hidden_width() == 16);
    CHECK(rule.meta_layout().size() == 5 * 16 * 4);  // N·h·k
}

TEMPLATE_TEST_CASE("L1: G(θ₀) = α₀I, so the first call moves by −α₀(1−β)g₀", "[lodo]", float,
                   double) {
    using S = TestType;
    const scaltra::problems::Rosenbrock<S> f(10);
    for (const auto form :
         {scaltra::LodoForm::full, scaltra::LodoForm::diagonal, scaltra::LodoForm::global}) {
        INFO("form " << static_cast<int>(form));
        scaltra::Lodo<S> opt(10, {.alpha0 = S(0.01), .form = form});
        Vec<S> x = f.initial_point(), g(10);
        f(x, g);
        const Vec<S> expected = x - S(0.01) * (S(1) - S(0.9)) * g;
        opt.step(x, f);
        const S tol = std::is_same_v<S, float> ? S(1e-6) : S(1e-13);
        CHECK((x - expected).norm() <= tol * expected.norm());
    }
}

TEST_CASE("L2: G(θ) is symmetric positive semidefinite, and α₀I at θ₀", "[lodo]") {
    const Index n = 9;
    const Rule rule(scaltra::Layout(n), {.alpha0 = 0.5, .layers = 4, .block = 3});
    auto state = rule.initial_state();
    CHECK(implicit_G(rule, state, n).isApprox(0.5 * Mat<double>::Identity(n, n), 1e-13));
    scaltra::Rng rng(5);
    state.phi = rng.normal_vector<double>(state.phi.size());
    const Mat<double> G = implicit_G(rule, state, n);
    CHECK(G.isApprox(G.transpose(), 1e-12));
    const Vec<double> eigenvalues = Eigen::SelfAdjointEigenSolver<Mat<double>>(G).eigenvalues();
    CHECK(eigenvalues.minCoeff() >= -1e-10 * eigenvalues.maxCoeff());
    CHECK(eigenvalues.maxCoeff() > 0);
}

TEST_CASE("L5: LODO's hypergradient equals central differences", "[lodo]") {
    const Index n = 5;
    for (const auto form :
         {scaltra::LodoForm::full, scaltra::LodoForm::diagonal, scaltra::LodoForm::global}) {
        INFO("form " << static_cast<int>(form));
        const Rule rule(scaltra::Layout(n), {.alpha0 = 0.7, .layers = 3, .block = 2, .form = form});
        auto state = rule.initial_state();
        scaltra::Rng rng(6);
        state.phi += 0.3 * rng.normal_vector<double>(state.phi.size());
        state.m = rng.normal_vector<double>(n);
        const Vec<double> g = rng.normal_vector<double>(n);
        Vec<double> h = Vec<double>::Zero(state.phi.size());
        scaltra::ad::Tape<double> tape;
        tape.vjp(rule.record(tape, state, h.data()), g);
        auto inner = [&](const Vec<double>& phi) {  // ⟨g, Δ(θ)⟩
            auto at = state;
            at.phi = phi;
            scaltra::ad::Tape<double> t;
            return g.dot(Vec<double>(rule.record(t, at, nullptr).value()));
        };
        for (Index i = 0; i < state.phi.size(); ++i) {
            Vec<double> up = state.phi, down = state.phi;
            up[i] += 1e-6;
            down[i] -= 1e-6;
            CHECK(h[i] == Approx((inner(up) - inner(down)) / 2e-6).margin(1e-8));
        }
    }
}

TEST_CASE("LODO: save and load mid-run continue bit-identically, the permutations included",
          "[lodo]") {
    const scaltra::problems::Rosenbrock<double> f(6);
    const scaltra::LodoOptions<double> options{.alpha0 = 1e-3, .layers = 4};
    scaltra::Lodo<double> a(6, options), b(6, options);
    Vec<double> xa = f.initial_point();
    for (int t = 0; t < 10; ++t)
        a.step(xa, f);
    testing::check_resumes_bit_identically(a, b, f, xa, 10);
    CHECK(a.state().phi != scaltra::Lodo<double>(6, options).state().phi);  // θ was learned

    // An optimizer built with another seed takes the saved permutations with the
    // state, and continues as the one that saved it.
    scaltra::Lodo<double> other(6, {.alpha0 = 1e-3, .layers = 4, .seed = 1});
    CHECK(other.state().perms != a.state().perms);
    std::stringstream again;
    a.save(again);
    other.load(again);
    Vec<double> xo = xa;
    for (int t = 0; t < 5; ++t) {
        a.step(xa, f);
        other.step(xo, f);
    }
    CHECK(xo == xa);
    CHECK(scaltra::bitwise_equal(other.state(), a.state()));
}

namespace {

/// A E formed densely from the state's blocks and permutations:
/// L_i = blockdiag(W_i)ᵀ P_i, (P_i)_{t, perms(t, i)} = 1.
Mat<double> dense_AE(const scaltra::LodoState<double>& state, Index n, Index k) {
    const Index h = state.perms.rows(), layers = state.perms.cols();
    Mat<double> A = Mat<double>::Identity(h, h).leftCols(n);  // E
    for (Index i = 0; i < layers; ++i) {
        Mat<double> P = Mat<double>::Zero(h, h), B = Mat<double>::Zero(h, h);
        for (Index t = 0; t < h; ++t)
            P(t, state.perms(t, i)) = 1;
        const auto W = state.phi.segment(i * k * h, k * h).reshaped(k, h);
        for (Index j = 0; j < h; j += k)
            B.block(j, j, k, k) = W.middleCols(j, k);
        A = B.transpose() * P * A;
    }
    return A;
}

/// G(θ) = α₀ EᵀAᵀA E.
Mat<double> dense_G(const scaltra::LodoState<double>& state, Index n, Index k, double alpha0) {
    const Mat<double> AE = dense_AE(state, n, k);
    return alpha0 * AE.transpose() * AE;
}

}  // namespace

TEST_CASE("LODO's permutations are read and set with the state, and checked", "[lodo]") {
    const Index n = 5, k = 2;
    scaltra::Lodo<double> opt(n, {.alpha0 = 0.3, .layers = 3, .block = k, .beta = 0.5});
    auto state = opt.state();
    const Index h = opt.rule().hidden_width();
    REQUIRE(state.perms.rows() == h);
    REQUIRE(state.perms.cols() == 3);

    // A permutation of the user's (reversal, rotations) and random blocks: the
    // first move is −G(θ)(1 − β)g with G formed densely from them.
    scaltra::Rng rng(8);
    for (Index t = 0; t < h; ++t) {
        state.perms(t, 0) = static_cast<std::int32_t>(h - 1 - t);
        state.perms(t, 1) = static_cast<std::int32_t>((t + 3) % h);
        state.perms(t, 2) = static_cast<std::int32_t>((t + 5) % h);
    }
    state.phi = rng.normal_vector<double>(state.phi.size());
    opt.set_state(state);
    CHECK(opt.state().perms == state.perms);
    const Vec<double> x0 = rng.normal_vector<double>(n), g = rng.normal_vector<double>(n);
    Vec<double> x = x0;
    opt.update(x, g);
    const Vec<double> expected = x0 - dense_G(state, n, k, 0.3) * (0.5 * g);
    CHECK((x - expected).norm() <= 1e-12 * expected.norm());
    // The tape path reads the same permutations, also after it has recorded with
    // the seed's.
    scaltra::Lodo<double> taped(n, {.alpha0 = 0.3,
                                    .layers = 3,
                                    .block = k,
                                    .beta = 0.5,
                                    .hypergradient = scaltra::Hypergradient::tape});
    Vec<double> y = x0;
    taped.update(y, g);
    taped.set_state(state);
    y = x0;
    taped.update(y, g);
    CHECK((y - expected).norm() <= 1e-12 * expected.norm());

    // A column that is not a permutation is refused, the state kept.
    const auto before = opt.state();
    auto repeated = before;
    repeated.perms(1, 2) = repeated.perms(0, 2);
    CHECK_THROWS_WITH(opt.set_state(repeated), Catch::Contains("column 2 is not a permutation"));
    auto out_of_range = before;
    out_of_range.perms(0, 0) = static_cast<std::int32_t>(h);
    CHECK_THROWS_AS(opt.set_state(out_of_range), scaltra::CorruptState);
    std::stringstream saved;
    scaltra::save_state<double>(saved, opt.name(), repeated);
    opt.meta_optimizer()->save(saved);
    CHECK_THROWS_WITH(opt.load(saved), Catch::Contains("perms"));
    CHECK(scaltra::bitwise_equal(opt.state(), before));

    // reset() goes back to the seed's permutations.
    opt.reset();
    CHECK(opt.state().perms == scaltra::Lodo<double>(n, {.layers = 3, .block = k}).state().perms);
}

TEST_CASE(
    "LODO's butterfly permutations: digit swaps, and every input reaches every output "
    "in D + 1 layers",
    "[lodo]") {
    using scaltra::detail::butterfly_depth;
    using scaltra::detail::butterfly_permutation;
    // Where the blocks are a power of k, stage l swaps entry t's base-k digit 0
    // (its slot) with its digit l + 1 (digit l of its block).
    for (const auto& [h, k] : {std::pair<Index, Index>{256, 4}, {64, 2}, {27, 3}}) {
        const Index depth = butterfly_depth(h, k);
        CHECK(depth == (k == 4 ? 3 : k == 2 ? 5 : 2));
        for (Index l = 0; l < depth; ++l) {
            Index s = k;  // k^(l+1)
            for (Index i = 0; i < l; ++i)
                s *= k;
            const std::vector<Index> picks = butterfly_permutation(h, k, l);
            for (Index t = 0; t < h; ++t) {
                const Index slot = t % k, digit = (t / s) % k;
                CAPTURE(h, k, l, t);
                const Index swapped = t - slot - digit * s + digit + slot * s;
                CHECK(picks[static_cast<std::size_t>(t)] == swapped);
            }
        }
    }
    // Elsewhere (groups cut short by the end) each stage is still a permutation.
    for (const auto& [h, k] : {std::pair<Index, Index>{42, 2}, {60, 4}, {7, 1}, {4, 4}, {90, 3}}) {
        for (Index l = 0; l < butterfly_depth(h, k); ++l) {
            std::vector<Index> picks = butterfly_permutation(h, k, l);
            std::sort(picks.begin(), picks.end());
            std::vector<Index> identity(static_cast<std::size_t>(h));
            std::iota(identity.begin(), identity.end(), Index(0));
            CAPTURE(h, k, l);
            CHECK(picks == identity);
        }
    }

    // A E with random blocks has no zero entry after D + 1 layers where the blocks
    // are a power of k, and has some after D (32 blocks of 2: D = 5); where they are
    // not it takes more layers, at most 2D (21 blocks of 2: D = 5 again).
    scaltra::Rng rng(3);
    for (const auto& [n, layers, full] :
         {std::tuple<Index, Index, bool>{31, 5, false}, {31, 6, true}, {20, 10, true}}) {
        const Index k = 2, h = Rule::hidden_width(n, k), depth = butterfly_depth(h, k);
        REQUIRE(depth == 5);
        scaltra::Lodo<double> opt(
            n,
            {.layers = layers, .block = k, .permutations = scaltra::LodoPermutations::butterfly});
        auto state = opt.state();
        for (Index i = 0; i < layers; ++i) {
            const std::vector<Index> picks = butterfly_permutation(h, k, i % depth);
            for (Index t = 0; t < h; ++t)
                CHECK(state.perms(t, i) == picks[static_cast<std::size_t>(t)]);
        }
        state.phi = rng.normal_vector<double>(state.phi.size());
        const Index zeros = (dense_AE(state, n, k).array() == 0).count();
        CAPTURE(n, layers);
        CHECK((full ? zeros == 0 : zeros > 0));
        // The optimizer moves by those permutations: −G(θ)(1 − β)g, G formed densely.
        opt.set_state(state);
        const Vec<double> g = rng.normal_vector<double>(n);
        Vec<double> x = Vec<double>::Zero(n);
        opt.update(x, g);
        const Vec<double> expected = -dense_G(state, n, k, 1.0) * (0.1 * g);
        CHECK((x - expected).norm() <= 1e-12 * expected.norm());
        opt.reset();
        CHECK(opt.state().perms == state.perms);
    }
}

TEMPLATE_TEST_CASE("LODO's closed form (move and hypergradient) equals its tape recording",
                   "[lodo]", float, double) {
    using S = TestType;
    using R = scaltra::detail::LodoRule<S, scaltra::AdamOptions<S>>;
    const S tol = std::is_same_v<S, float> ? S(2e-5) : S(1e-12);
    const Index n = 150;                  // h > the backward pass's chunk for every k here
    for (const Index k : {2, 3, 4, 8}) {  // fixed-size kernels, and the dynamic one (3)
        INFO("block " << k);
        const R rule(scaltra::Layout(n), {.alpha0 = S(0.7), .layers = 3, .block = k});
        auto state = rule.initial_state();
        scaltra::Rng rng(static_cast<std::uint64_t>(k));
        state.phi += S(0.3) * rng.normal_vector<S>(state.phi.size());
        state.m = rng.normal_vector<S>(n);
        const Vec<S> g = rng.normal_vector<S>(n), x0 = rng.normal_vector<S>(n);

        scaltra::ad::Tape<S> tape;
        Vec<S> h_tape = Vec<S>::Zero(state.phi.size());
        const auto delta = rule.record(tape, state, h_tape.data());
        const Vec<S> x_tape = x0 + Vec<S>(delta.value());
        tape.vjp(delta, g);

        Vec<S> x = x0, h(state.phi.size());
        rule.move(state, x);
        rule.hypergradient(state, g, h);
        CHECK((x - x_tape).norm() <= tol * x_tape.norm());
        CHECK((h - h_tape).norm() <= tol * h_tape.norm());
    }
}

TEMPLATE_TEST_CASE("LODO's fused step is the separate steps'", "[lodo]", float, double) {
    using S = TestType;
    using R = scaltra::detail::LodoRule<S, scaltra::AdamOptions<S>>;
    const S tol = std::is_same_v<S, float> ? S(1e-5) : S(1e-13);
    const Index n = 150;  // several chunks per layer
    const R rule(scaltra::Layout(n), {.alpha0 = S(0.5), .layers = 4});
    scaltra::Rng rng(8);
    auto state = rule.initial_state();
    state.step = 3;
    state.phi += S(0.2) * rng.normal_vector<S>(state.phi.size());
    state.m = rng.normal_vector<S>(n);
    const Vec<S> g = rng.normal_vector<S>(n), x0 = rng.normal_vector<S>(n);
    scaltra::Adam<S> meta(rule.meta_layout(), {.lr = S(1e-2)});
    meta.update(state.phi, rng.normal_vector<S>(state.phi.size()));  // moments not zero

    auto fused_state = state;
    auto fused_meta = meta;
    Vec<S> fused_x = x0;
    REQUIRE(rule.fused_apply(fused_state, fused_meta, fused_x, g));

    Vec<S> h(state.phi.size()), x = x0;
    rule.hypergradient(state, g, h);
    meta.update(state.phi, h);
    rule.observe(state, x, g);
    rule.move(state, x);

    CHECK(fused_state.m == state.m);
    CHECK((fused_state.phi - state.phi).norm() <= tol * state.phi.norm());
    CHECK((fused_meta.state().m - meta.state().m).norm() <= tol * meta.state().m.norm());
    CHECK((fused_meta.state().v - meta.state().v).norm() <= tol * meta.state().v.norm());
    CHECK(fused_meta.state().step == meta.state().step);
    CHECK((fused_x - x).norm() <= tol * x.norm());

    // Over a run, the optimizer (fused) follows the tape's steps.
    const scaltra::problems::Rosenbrock<S> f(10);
    scaltra::Lodo<S> fast(10, {.alpha0 = S(1e-3), .layers = 4, .meta = {.lr = S(1e-2)}});
    scaltra::Lodo<S> taped(10, {.alpha0 = S(1e-3),
                                .layers = 4,
                                .meta = {.lr = S(1e-2)},
                                .hypergradient = scaltra::Hypergradient::tape});
    Vec<S> xa = f.initial_point(), xb = xa;
    for (int t = 0; t < 30; ++t) {
        fast.step(xa, f);
        taped.step(xb, f);
    }
    CHECK((xa - xb).norm() <= 10 * tol * xb.norm());
    CHECK((fast.state().phi - taped.state().phi).norm() <= 10 * tol * taped.state().phi.norm());
    CHECK(fast.state().phi != scaltra::Lodo<S>(10, {.layers = 4}).state().phi);  // θ was learned
}

TEST_CASE("OnlineMeta finds both fused steps with Adam as meta-optimizer", "[lodo]") {
    STATIC_REQUIRE(scaltra::FusedStep<scaltra::detail::LodoRule<float, scaltra::AdamOptions<float>>,
                                      scaltra::Adam<float>>);
    STATIC_REQUIRE(
        scaltra::FusedStep<scaltra::detail::ScaltraRule<double, scaltra::AdamOptions<double>>,
                           scaltra::Adam<double>>);
}

TEST_CASE("LODO's fused step refuses, changing nothing, where it does not apply", "[lodo]") {
    using R = scaltra::detail::LodoRule<float, scaltra::AdamOptions<float>>;
    const Index n = 12;
    const Vec<float> g = Vec<float>::Ones(n);
    auto refuses = [&](const R& rule, const R::State& state) {
        auto s = state;
        scaltra::Adam<float> meta(rule.meta_layout());
        Vec<float> x = Vec<float>::Zero(n);
        const bool applied = rule.fused_apply(s, meta, x, g);
        return !applied && scaltra::bitwise_equal(s, state) && meta.state().step == 0
               && x.isZero(0);
    };
    const R full(scaltra::Layout(n), {.layers = 4});
    auto state = full.initial_state();
    state.m.setOnes();
    CHECK(refuses(full, state));  // before the first move
    state.step = 1;
    CHECK_FALSE(refuses(full, state));
    const R diagonal(scaltra::Layout(n), {.form = scaltra::LodoForm::diagonal});
    auto diagonal_state = diagonal.initial_state();
    diagonal_state.step = 1;
    CHECK(refuses(diagonal, diagonal_state));
    // θ large enough that the hypergradient could overflow a float: 16 layers of
    // norm 1e3 (the backward pass would reach 1e48).
    const R deep(scaltra::Layout(n), {.layers = 16});
    auto large = deep.initial_state();
    large.step = 1;
    large.m.setOnes();
    large.phi *= 1e3f;
    CHECK(refuses(deep, large));
    // A forward pass that stays finite (m and g tiny) while the backward pass
    // would overflow; and so whatever α₀ scales the hypergradient by.
    auto tiny = large;
    tiny.m.setConstant(1e-30f);
    const Vec<float> g_tiny = Vec<float>::Constant(n, 1e-30f);
    for (const float alpha0 : {1.0f, 1e-30f}) {
        const R rule(scaltra::Layout(n), {.alpha0 = alpha0, .layers = 16});
        auto s = tiny;
        scaltra::Adam<float> meta(rule.meta_layout());
        Vec<float> x = Vec<float>::Zero(n);
        CHECK_FALSE(rule.fused_apply(s, meta, x, g_tiny));
        CHECK(scaltra::bitwise_equal(s, tiny));
    }
}

TEST_CASE("LODO: a move that overflows throws NonFinite and leaves x unchanged", "[lodo]") {
    using R = scaltra::detail::LodoRule<float, scaltra::AdamOptions<float>>;
    const Index n = 12;
    const R rule(scaltra::Layout(n), {.layers = 16});
    auto state = rule.initial_state();
    state.m.setOnes();
    state.phi *= 1e3f;  // G grows like 1e96
    Vec<float> x = Vec<float>::Ones(n);
    CHECK_THROWS_AS(rule.move(state, x), scaltra::NonFinite);
    CHECK(x == Vec<float>::Ones(n));
    // The tape's move is guarded alike.
    scaltra::Lodo<float> taped(n, {.layers = 16, .hypergradient = scaltra::Hypergradient::tape});
    std::stringstream saved;
    taped.save(saved);
    std::stringstream bloated;
    {
        scaltra::Lodo<float> source(n, {.layers = 16});
        auto blown = source.state();
        blown.phi *= 1e3f;
        blown.m.setOnes();
        blown.step = 0;
        scaltra::save_state<float>(bloated, "LODO", blown);
        source.meta_optimizer()->save(bloated);
    }
    taped.load(bloated);
    CHECK_THROWS_WITH(taped.update(x, Vec<float>::Zero(n)),
                      Catch::Contains("not finite") && Catch::Contains("x is unchanged"));
    CHECK(x == Vec<float>::Ones(n));
}

TEMPLATE_TEST_CASE("LODO at depth 0 is momentum SGD", "[lodo]", float, double) {
    using S = TestType;
    const scaltra::problems::Rosenbrock<S> f(6);
    scaltra::Lodo<S> opt(6, {.alpha0 = S(1e-3), .layers = 0, .beta = S(0.8)});
    CHECK(opt.rule().meta_layout().size() == 0);
    CHECK(opt.meta_optimizer() == nullptr);
    Vec<S> x = f.initial_point(), y = x, m = Vec<S>::Zero(6), g(6);
    for (int t = 0; t < 20; ++t) {  // m ← βm + (1−β)g, y ← y − α₀m
        opt.step(x, f);
        f(y, g);
        m = S(0.8) * m + S(0.2) * g;
        y -= S(1e-3) * m;
    }
    const S tol = std::is_same_v<S, float> ? S(1e-6) : S(1e-14);
    CHECK((x - y).norm() <= tol * y.norm());
    std::stringstream saved;
    opt.save(saved);
    scaltra::Lodo<S> resumed(6, {.alpha0 = S(1e-3), .layers = 0, .beta = S(0.8)});
    resumed.load(saved);
    CHECK(scaltra::bitwise_equal(resumed.state(), opt.state()));
}

// The suites every optimizer passes, and the learned optimizers' (φ's blocks), over
// LODO in float and double.
namespace {

using scaltra::bfloat16;
using Compact = scaltra::CompactLodo<float>;

/// |stored − exact| within one bfloat16 ulp of the larger (8 bits of mantissa).
bool bfloat16_neighbour(float stored, float exact) {
    const float larger = std::max(std::abs(stored), std::abs(exact));
    return larger == 0 || std::abs(stored - exact) <= std::exp2(std::floor(std::log2(larger)) - 7);
}

/// How many elements of `got` are not bfloat16 neighbours of `want`.
Index not_neighbours(const Vec<float>& got, const Vec<float>& want) {
    Index count = 0;
    for (Index i = 0; i < want.size(); ++i)
        count += !bfloat16_neighbour(got[i], want[i]);
    return count;
}

/// The float LODO at the compact one's state, widened (the meta-optimizer's too).
void take_widened_state(scaltra::Lodo<float>& to, const Compact& from) {
    const auto& s = from.state();
    to.set_state({s.step, s.phi.cast<float>(), s.m, s.perms});
    const auto& meta = from.meta_optimizer()->state();
    to.set_meta_state(
        {meta.step, meta.m.cast<float>(), meta.v.cast<float>(), meta.v_max.cast<float>()});
}

}  // namespace

TEST_CASE(
    "CompactLodo keeps θ and Adam's moments of it in bfloat16, and each step is the float "
    "step up to one rounding of each",
    "[lodo][bfloat16]") {
    const Index n = 40;
    const scaltra::problems::IllConditionedQuadratic<float> f(n, 100.0, 7);
    for (const auto hypergradient :
         {scaltra::Hypergradient::closed_form, scaltra::Hypergradient::tape}) {
        const scaltra::LodoOptions<float> options{
            .alpha0 = 0.05, .layers = 4, .meta = {.lr = 1e-2}, .hypergradient = hypergradient};
        Compact compact(n, options);
        scaltra::Lodo<float> reference(n, options);
        STATIC_REQUIRE(std::is_same_v<decltype(compact.state().phi), Vec<bfloat16>>);
        STATIC_REQUIRE(
            std::is_same_v<decltype(compact.meta_optimizer()->state().v), Vec<bfloat16>>);
        // θ₀: the float blocks rounded to the nearest bfloat16.
        CHECK(compact.state().phi == reference.state().phi.cast<bfloat16>());
        Vec<float> x = f.initial_point();
        for (int t = 0; t < 8; ++t) {
            take_widened_state(reference, compact);
            Vec<float> xr = x;
            const Vec<float> x_before = x;
            compact.step(x, f);
            reference.step(xr, f);
            INFO("step " << t);
            CHECK(not_neighbours(compact.state().phi.cast<float>(), reference.state().phi) == 0);
            const auto& meta = compact.meta_optimizer()->state();
            CHECK(not_neighbours(meta.m.cast<float>(), reference.meta_optimizer()->state().m) == 0);
            CHECK(not_neighbours(meta.v.cast<float>(), reference.meta_optimizer()->state().v) == 0);
            // The move is G(θ)m with θ rounded: within a few of N ulps.
            CHECK((x - xr).norm() <= 0.05 * (xr - x_before).norm());
            if (t > 1)
                CHECK(compact.state().phi != reference.state().phi.cast<bfloat16>());
        }
    }
}

TEST_CASE(
    "CompactLodo learns θ as the float LODO does: the stochastic rounding does not stall "
    "small meta-steps",
    "[lodo][bfloat16]") {
    const Index n = 30;
    const scaltra::problems::IllConditionedQuadratic<float> f(n, 100.0, 7);
    const scaltra::LodoOptions<float> options{.alpha0 = 0.05, .layers = 4};  // meta.lr 1e-3
    Compact compact(n, options);
    scaltra::Lodo<float> reference(n, options);
    take_widened_state(reference, compact);
    const Vec<float> theta0 = reference.state().phi;
    Vec<float> x = f.initial_point(), xr = x;
    for (int t = 0; t < 300; ++t) {
        compact.step(x, f);
        reference.step(xr, f);
    }
    const Vec<float> theta = compact.state().phi.cast<float>();
    const float drift = (reference.state().phi - theta0).norm();
    INFO("drift " << drift << ", compact's drift " << (theta - theta0).norm() << ", apart "
                  << (theta - reference.state().phi).norm());
    CHECK((theta - reference.state().phi).norm() < 0.5f * drift);
    CHECK((theta - theta0).norm() > 0.5f * drift);
    Vec<float> g(n);
    CHECK(f(x, g) < 1.5f * f(xr, g));
}

TEST_CASE("CompactLodo saves bfloat16 as 2-byte words and resumes bit-identically",
          "[lodo][bfloat16]") {
    const scaltra::problems::Rosenbrock<float> f(6);
    const scaltra::LodoOptions<float> options{.alpha0 = 1e-3, .layers = 4};
    Compact a(6, options), b(6, options);
    Vec<float> xa = f.initial_point();
    for (int t = 0; t < 10; ++t)
        a.step(xa, f);
    testing::check_resumes_bit_identically(a, b, f, xa, 10);
    std::stringstream compact_bytes, float_bytes;
    a.save(compact_bytes);
    scaltra::Lodo<float> wide(6, options);
    wide.save(float_bytes);
    // θ, m_θ and v_θ are most of the bytes: half of them.
    CHECK(compact_bytes.str().size() < 0.6 * static_cast<double>(float_bytes.str().size()));
    const auto before = b.state();
    CHECK_THROWS_AS(b.load(float_bytes), scaltra::CorruptState);  // a float state is not one
    CHECK(scaltra::bitwise_equal(b.state(), before));
}

namespace {
using LodoFamily = decltype(std::tuple_cat(testing::LodoCases{}, testing::CompactLodoCases{}));
}  // namespace
SCALTRA_CROSS_OPTIMIZER_SUITES(LodoFamily)
SCALTRA_PHI_BLOCKS_SUITE(LodoFamily)
