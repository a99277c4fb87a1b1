// optim/lodo.hpp: the checks L1, L2, L4 and L5 of ALGORITHMS.md, and save/load.
#include <sstream>
#include <type_traits>

#include <Eigen/Eigenvalues>

#include <scaltra/autodiff.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

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

TEST_CASE("LODO: save and load mid-run continue bit-identically; other permutations are refused",
          "[lodo]") {
    const scaltra::problems::Rosenbrock<double> f(6);
    const scaltra::LodoOptions<double> options{.alpha0 = 1e-3, .layers = 4};
    scaltra::Lodo<double> a(6, options), b(6, options);
    Vec<double> xa = f.initial_point();
    for (int t = 0; t < 10; ++t)
        a.step(xa, f);
    std::stringstream saved;
    a.save(saved);
    b.load(saved);
    Vec<double> xb = xa;
    for (int t = 0; t < 10; ++t)
        CHECK(a.step(xa, f) == b.step(xb, f));
    CHECK(xa == xb);
    CHECK(scaltra::bitwise_equal(a.state(), b.state()));
    CHECK(a.state().phi != scaltra::Lodo<double>(6, options).state().phi);  // θ was learned

    scaltra::Lodo<double> other(6, {.alpha0 = 1e-3, .layers = 4, .seed = 1});
    std::stringstream again;
    a.save(again);
    const auto before = other.state();
    CHECK_THROWS_WITH(other.load(again), Catch::Contains("other permutations"));
    CHECK(scaltra::bitwise_equal(other.state(), before));
}
