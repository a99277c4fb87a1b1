// autodiff/: every op's backward rule against central differences (double, and
// float against double differences), on random shapes including 1×1, bias
// broadcasting and transposes; bad input; scopes; external leaves.
#include <cmath>
#include <limits>
#include <vector>

#include <scaltra/autodiff.hpp>
#include <scaltra/core/rng.hpp>
#include <scaltra/optim/adam.hpp>

#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Mat;
namespace ad = scaltra::ad;

namespace {

Mat<double> random(scaltra::Rng& rng, Index rows, Index cols, double lo = -1, double hi = 1) {
    Mat<double> m(rows, cols);
    for (Index i = 0; i < m.size(); ++i)
        m(i) = rng.uniform(lo, hi);
    return m;
}

// ⟨op(leaves), R⟩ with a fixed random R of the op's output shape, so that every
// output element gets a distinct adjoint.
template <class Op>
auto weighted(Op op, const Mat<double>& R) {
    return [op, R](auto leaves) {
        auto y = op(leaves);
        using S = typename decltype(y)::Scalar;
        return ad::dot(y, y.tape().constant(R.cast<S>()));
    };
}

template <class S>
double tolerance() {
    return std::is_same_v<S, double> ? 1e-6 : 1e-4;
}

// The shapes every op is checked on.
const std::vector<std::pair<Index, Index>> shapes = {{1, 1}, {1, 5}, {4, 1}, {3, 7}, {6, 2}};

}  // namespace

TEMPLATE_TEST_CASE("elementwise ops: backward matches central differences", "[autodiff]", float,
                   double) {
    using S = TestType;
    scaltra::Rng rng(1);
    for (auto [r, c] : shapes) {
        INFO("shape " << r << "x" << c);
        const Mat<double> R = random(rng, r, c);
        const auto a = random(rng, r, c), b = random(rng, r, c);
        const auto positive = random(rng, r, c, 0.5, 2.0);
        auto check1 = [&](auto op, const Mat<double>& x) {
            return ad::gradient_error<S>(weighted(op, R), {x});
        };
        auto check2 = [&](auto op, const Mat<double>& x, const Mat<double>& y) {
            return ad::gradient_error<S>(weighted(op, R), {x, y});
        };
        CHECK(check2([](auto v) { return v[0] + v[1]; }, a, b) < tolerance<S>());
        CHECK(check2([](auto v) { return v[0] - v[1]; }, a, b) < tolerance<S>());
        CHECK(check2([](auto v) { return ad::mul(v[0], v[1]); }, a, b) < tolerance<S>());
        CHECK(check2([](auto v) { return ad::div(v[0], v[1]); }, a, positive) < tolerance<S>());
        CHECK(check1([](auto v) { return -v[0]; }, a) < tolerance<S>());
        CHECK(check1(
                  [](auto v) {
                      return ad::scale(v[0],
                                       typename std::remove_cvref_t<decltype(v[0])>::Scalar(2.5));
                  },
                  a)
              < tolerance<S>());
        CHECK(check2([](auto v) { return ad::scale(v[0], v[1]); }, a, random(rng, 1, 1))
              < tolerance<S>());
        CHECK(check1([](auto v) { return ad::exp(v[0]); }, a) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::log(v[0]); }, positive) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::tanh(v[0]); }, a) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::sigmoid(v[0]); }, a) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::relu(v[0]); }, a) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::softplus(v[0]); }, 3.0 * a) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::atan(v[0]); }, a) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::sqrt(v[0]); }, positive) < tolerance<S>());
        CHECK(check1([](auto v) { return ad::square(v[0]); }, a) < tolerance<S>());
        // The same operand twice: adjoints must accumulate.
        CHECK(check1([](auto v) { return ad::mul(v[0], v[0]); }, a) < tolerance<S>());
    }
}

TEST_CASE("gradient_error counts a non-finite gradient as an infinite error, and needs step > 0",
          "[autodiff]") {
    auto sum_exp = [](auto v) { return ad::sum(ad::exp(v[0])); };
    const Mat<double> big = Mat<double>::Constant(1, 1, 1000.0);  // e¹⁰⁰⁰ overflows: fd is NaN
    CHECK(ad::gradient_error<double>(sum_exp, {big}) == std::numeric_limits<double>::infinity());
    const Mat<double> one = Mat<double>::Ones(1, 1);
    CHECK(ad::gradient_error<double>(sum_exp, {one}) < 1e-6);
    CHECK_THROWS_AS(ad::gradient_error<double>(sum_exp, {one}, 0.0), scaltra::InvalidArgument);
    CHECK_THROWS_AS(ad::gradient_error<double>(sum_exp, {one}, NAN), scaltra::InvalidArgument);
}

TEMPLATE_TEST_CASE("bias broadcasting over columns and rows", "[autodiff]", float, double) {
    using S = TestType;
    scaltra::Rng rng(2);
    for (auto [r, c] : shapes) {
        INFO("shape " << r << "x" << c);
        const Mat<double> R = random(rng, r, c);
        const auto a = random(rng, r, c);
        const auto column = random(rng, r, 1), row = random(rng, 1, c);
        CHECK(ad::gradient_error<S>(weighted([](auto v) { return v[0] + v[1]; }, R), {a, column})
              < tolerance<S>());
        CHECK(ad::gradient_error<S>(weighted([](auto v) { return v[0] - v[1]; }, R), {a, row})
              < tolerance<S>());
    }
}

TEMPLATE_TEST_CASE("products and reductions", "[autodiff]", float, double) {
    using S = TestType;
    scaltra::Rng rng(3);
    for (auto [m, k] : shapes)
        for (Index n : {1, 3}) {
            INFO("m, k, n = " << m << ", " << k << ", " << n);
            const Mat<double> R = random(rng, m, n);
            const auto A = random(rng, m, k), At = random(rng, k, m);
            const auto B = random(rng, k, n), Bt = random(rng, n, k);
            auto mm = [&](bool ta, bool tb) {
                return ad::gradient_error<S>(
                    weighted([ta, tb](auto v) { return ad::matmul(v[0], v[1], ta, tb); }, R),
                    {ta ? At : A, tb ? Bt : B});
            };
            CHECK(mm(false, false) < tolerance<S>());
            CHECK(mm(true, false) < tolerance<S>());
            CHECK(mm(false, true) < tolerance<S>());
            CHECK(mm(true, true) < tolerance<S>());
        }
    for (auto [r, c] : shapes) {
        const auto a = random(rng, r, c), b = random(rng, r, c);
        CHECK(ad::gradient_error<S>([](auto v) { return ad::sum(ad::square(v[0])); }, {a})
              < tolerance<S>());
        CHECK(ad::gradient_error<S>([](auto v) { return ad::mean(ad::exp(v[0])); }, {a})
              < tolerance<S>());
        CHECK(ad::gradient_error<S>([](auto v) { return ad::dot(v[0], v[1]); }, {a, b})
              < tolerance<S>());
        CHECK(ad::gradient_error<S>([](auto v) { return ad::squared_norm(v[0]); }, {a})
              < tolerance<S>());
        // AᵀA: one operand used on both sides of a product.
        const Mat<double> R = random(rng, c, c);
        CHECK(ad::gradient_error<S>(
                  weighted([](auto v) { return ad::matmul(v[0], v[0], true, false); }, R), {a})
              < tolerance<S>());
    }
}

TEMPLATE_TEST_CASE("solving with a symmetric positive definite matrix", "[autodiff]", float,
                   double) {
    using S = TestType;
    scaltra::Rng rng(11);
    const Mat<double> G = random(rng, 4, 4);
    const Mat<double> A = G * G.transpose() + 4 * Mat<double>::Identity(4, 4);
    const Mat<double> R = random(rng, 4, 3);
    // Through A = C Cᵀ + 4I, so that every A seen by the differences is symmetric.
    auto op = [&](auto v) {
        auto& tape = v[0].tape();
        using T = typename std::remove_cvref_t<decltype(v[0])>::Scalar;
        const auto shift = tape.constant((4 * Mat<double>::Identity(4, 4)).cast<T>());
        return ad::solve_spd(ad::matmul(v[0], v[0], false, true) + shift, v[1]);
    };
    CHECK(ad::gradient_error<S>(weighted(op, R), {G, random(rng, 4, 3)}) < tolerance<S>());
    ad::Tape<double> tape;
    const Mat<double> B = random(rng, 4, 3);
    CHECK(ad::solve_spd(tape.constant(A), tape.constant(B)).value().isApprox(A.ldlt().solve(B)));
    CHECK_THROWS_AS(ad::solve_spd(tape.constant(-A), tape.constant(B)), scaltra::InvalidArgument);
    CHECK_THROWS_AS(ad::solve_spd(tape.constant(A), tape.constant(random(rng, 3, 3))),
                    scaltra::DimensionMismatch);
}

TEMPLATE_TEST_CASE("block-diagonal product by k×k blocks", "[autodiff]", float, double) {
    using S = TestType;
    scaltra::Rng rng(4);
    for (Index k : {1, 2, 4})
        for (Index c : {1, 3})
            for (bool transpose : {false, true}) {
                INFO("k " << k << ", columns " << c << ", transpose " << transpose);
                const Index h = 3 * k;
                const auto W = random(rng, k, h), v = random(rng, h, c), R = random(rng, h, c);
                CHECK(ad::gradient_error<S>(weighted(
                                                [transpose](auto x) {
                                                    return ad::block_diag_mul(x[0], x[1],
                                                                              transpose);
                                                },
                                                R),
                                            {W, v})
                      < tolerance<S>());
            }
    // Against the dense block-diagonal matrix.
    ad::Tape<double> tape;
    const auto W = random(rng, 2, 6), v = random(rng, 6, 1);
    Mat<double> dense = Mat<double>::Zero(6, 6);
    for (Index j = 0; j < 3; ++j)
        dense.block(2 * j, 2 * j, 2, 2) = W.middleCols(2 * j, 2);
    auto y = ad::block_diag_mul(tape.variable(W), tape.variable(v));
    CHECK(y.value().isApprox(dense * v));
    auto yt = ad::block_diag_mul(tape.variable(W), tape.variable(v), true);
    CHECK(yt.value().isApprox(dense.transpose() * v));
}

TEMPLATE_TEST_CASE("shape ops: slice, reshape, concat, gather", "[autodiff]", float, double) {
    using S = TestType;
    scaltra::Rng rng(5);
    const auto a = random(rng, 4, 6), b = random(rng, 2, 6), c = random(rng, 4, 3);
    auto err = [](auto op, const Mat<double>& R, std::vector<Mat<double>> in) {
        return ad::gradient_error<S>(weighted(op, R), in);
    };
    CHECK(err([](auto v) { return ad::slice(v[0], 1, 2, 2, 3); }, random(rng, 2, 3), {a})
          < tolerance<S>());
    CHECK(err([](auto v) { return ad::slice(v[0], 3, 5, 1, 1); }, random(rng, 1, 1), {a})
          < tolerance<S>());
    CHECK(err([](auto v) { return ad::reshape(v[0], 8, 3); }, random(rng, 8, 3), {a})
          < tolerance<S>());
    CHECK(err([](auto v) { return ad::concat_rows(v[0], v[1]); }, random(rng, 6, 6), {a, b})
          < tolerance<S>());
    CHECK(err([](auto v) { return ad::concat_cols(v[0], v[1]); }, random(rng, 4, 9), {a, c})
          < tolerance<S>());
    const std::vector<Index> permutation{2, 0, 3, 1};
    const std::vector<Index> repeated{1, 1, 3};
    CHECK(err([&](auto v) { return ad::gather_rows(v[0], permutation); }, random(rng, 4, 6), {a})
          < tolerance<S>());
    CHECK(err([&](auto v) { return ad::gather_rows(v[0], repeated); }, random(rng, 3, 6), {a})
          < tolerance<S>());

    ad::Tape<double> tape;
    auto x = tape.variable(a);
    CHECK(ad::gather_rows(x, permutation).value().row(0) == a.row(2));
    CHECK(ad::reshape(x, 24, 1).value()(5, 0) == a(1, 1));
}

TEMPLATE_TEST_CASE("losses", "[autodiff]", float, double) {
    using S = TestType;
    scaltra::Rng rng(6);
    for (auto [classes, batch] : std::vector<std::pair<Index, Index>>{{1, 1}, {3, 1}, {10, 7}}) {
        INFO(classes << " classes, batch " << batch);
        const auto logits = random(rng, classes, batch, -3, 3);
        const auto target = random(rng, classes, batch, -3, 3);
        std::vector<Index> labels(static_cast<std::size_t>(batch));
        for (auto& l : labels)
            l = static_cast<Index>(rng.below(static_cast<std::uint64_t>(classes)));
        CHECK(ad::gradient_error<S>([&](auto v) { return ad::softmax_cross_entropy(v[0], labels); },
                                    {logits})
              < tolerance<S>());
        CHECK(ad::gradient_error<S>([](auto v) { return ad::mse(v[0], v[1]); }, {logits, target})
              < tolerance<S>());
        CHECK(ad::gradient_error<S>([](auto v) { return ad::kl_softmax(v[0], v[1]); },
                                    {target, logits})
              < tolerance<S>());
    }
    // Values against direct formulas; stable for large logits.
    ad::Tape<double> tape;
    Mat<double> z(3, 2);
    z << 1000, 0, 0, 1, -1000, 2;
    const std::vector<Index> labels{0, 2};
    const double ce = ad::softmax_cross_entropy(tape.variable(z), labels).value()(0, 0);
    const double col1 = std::log(std::exp(0.0) + std::exp(1.0) + std::exp(2.0)) - 2.0;
    CHECK(ce == Approx((0.0 + col1) / 2));
    CHECK(ad::kl_softmax(tape.variable(z), tape.variable(z)).value()(0, 0)
          == Approx(0).margin(1e-12));
}

TEST_CASE("leaves can view a flat parameter vector, and gradients land in its layout",
          "[autodiff]") {
    scaltra::Layout layout;
    layout.add("W", 3, 2).add("b", 3);
    scaltra::Rng rng(7);
    const scaltra::Vec<double> w = rng.normal_vector<double>(layout.size());
    scaltra::Vec<double> grad = scaltra::Vec<double>::Zero(layout.size());
    const Mat<double> x = random(rng, 2, 4);
    ad::Tape<double> tape;
    auto W = tape.leaf(w, grad, layout.at("W"));
    auto b = tape.leaf(w, grad, layout.at("b"));
    CHECK(W.value().data() == w.data());  // a view, not a copy
    auto loss = ad::sum(ad::square(ad::matmul(W, tape.constant(x)) + b));
    tape.backward(loss);
    const Mat<double> Wm = Eigen::Map<const Mat<double>>(w.data(), 3, 2);
    const Mat<double> y = (Wm * x).colwise() + w.tail(3);
    CHECK(Eigen::Map<Mat<double>>(grad.data(), 3, 2).isApprox(2 * y * x.transpose()));
    CHECK(grad.tail(3).isApprox(2 * y.rowwise().sum()));
    tape.backward(loss);  // external gradients accumulate, as torch's .grad
    CHECK(grad.tail(3).isApprox(4 * y.rowwise().sum()));
}

TEST_CASE("vjp seeds a non-scalar output", "[autodiff]") {
    ad::Tape<double> tape;
    scaltra::Rng rng(8);
    const auto A = random(rng, 3, 4), x = random(rng, 4, 1), seed = random(rng, 3, 1);
    auto X = tape.variable(x);
    auto y = ad::matmul(tape.constant(A), X);
    tape.vjp(y, seed);
    CHECK(X.adjoint().isApprox(A.transpose() * seed));
    CHECK_THROWS_AS(tape.vjp(y, Mat<double>::Ones(2, 1)), scaltra::DimensionMismatch);
}

TEST_CASE("bad input throws when recorded, naming the op and the shapes", "[autodiff]") {
    ad::Tape<double> tape;
    auto a = tape.variable(Mat<double>::Ones(2, 3));
    auto b = tape.variable(Mat<double>::Ones(4, 5));
    CHECK_THROWS_WITH(ad::matmul(a, b), Catch::Contains("matmul") && Catch::Contains("2x3")
                                            && Catch::Contains("4x5"));
    CHECK_THROWS_AS(ad::add(a, b), scaltra::DimensionMismatch);
    CHECK_THROWS_WITH(ad::mul(a, b), Catch::Contains("mul: shapes 2x3 and 4x5"));
    CHECK_THROWS_AS(ad::slice(a, 1, 1, 2, 2), scaltra::DimensionMismatch);
    CHECK_THROWS_AS(ad::reshape(a, 4, 2), scaltra::DimensionMismatch);
    CHECK_THROWS_AS(ad::concat_rows(a, b), scaltra::DimensionMismatch);
    CHECK_THROWS_AS(ad::block_diag_mul(a, b), scaltra::DimensionMismatch);
    const std::vector<Index> out_of_range{0, 5};
    CHECK_THROWS_AS(ad::gather_rows(a, out_of_range), scaltra::InvalidArgument);
    const std::vector<Index> labels{0, 1};
    CHECK_THROWS_AS(ad::softmax_cross_entropy(a, labels), scaltra::DimensionMismatch);
    const std::vector<Index> bad_labels{0, 1, 2};
    CHECK_THROWS_AS(ad::softmax_cross_entropy(a, bad_labels), scaltra::InvalidArgument);
    CHECK_THROWS_WITH(tape.backward(a), Catch::Contains("root must be 1x1"));
    const std::size_t nodes = tape.size();
    CHECK_THROWS(ad::matmul(a, b));
    CHECK(tape.size() == nodes);  // a refused op records nothing

    ad::Tape<double> other;
    auto c = other.variable(Mat<double>::Ones(2, 3));
    CHECK_THROWS_WITH(ad::add(a, c), Catch::Contains("another tape"));
    CHECK_THROWS_WITH(ad::Var<double>().rows(), Catch::Contains("empty Var"));
}

TEST_CASE("mark and rewind: an inner recording leaves the outer one intact", "[autodiff]") {
    ad::Tape<double> tape;
    auto x = tape.variable(Mat<double>::Constant(2, 2, 3.0));
    auto outer = ad::sum(ad::square(x));  // 36, ∂/∂x = 2x
    const auto m = tape.mark();
    auto inner = ad::sum(ad::exp(x));
    tape.backward(inner);
    CHECK(x.adjoint().isApprox(Mat<double>::Constant(2, 2, std::exp(3.0))));
    tape.rewind(m);
    CHECK_THROWS_WITH(inner.value(), Catch::Contains("rewound"));
    auto again = ad::sum(x);  // records where `inner` was: a new serial
    CHECK_THROWS_WITH(ad::exp(inner), Catch::Contains("rewound"));
    tape.backward(outer);
    CHECK(outer.value()(0, 0) == 36.0);
    CHECK(x.adjoint().isApprox(Mat<double>::Constant(2, 2, 6.0)));
    CHECK(again.value()(0, 0) == 12.0);
    tape.clear();
    CHECK(tape.size() == 0);
    CHECK_THROWS_AS(x.value(), scaltra::InvalidArgument);

    // A mark of a tape with more values than this one holds is refused, even when
    // its node count fits.
    ad::Tape<double> big;
    big.variable(Mat<double>::Zero(10, 10));
    ad::Tape<double> small;
    small.variable(Mat<double>::Zero(1, 1));
    CHECK_THROWS_WITH(small.rewind(big.mark()), Catch::Contains("another tape's"));
}

TEMPLATE_TEST_CASE("large products (the packed-GEMM path) match Eigen's, forward and backward, "
                   "on 1 and 2 threads",
                   "[autodiff]", float, double) {
    using S = TestType;
    scaltra::Rng rng(9);
    const Index m = 67, k = 45, n = 38;  // above the small-product threshold, odd sizes
    const int threads = GENERATE(1, 2);  // with OpenMP, 2 splits C's columns between threads
    Eigen::setNbThreads(threads);
    INFO("threads " << threads << " (Eigen uses " << Eigen::nbThreads() << ")");
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            INFO("transpose a " << ta << ", b " << tb);
            const Mat<S> A = random(rng, ta ? k : m, ta ? m : k).cast<S>();
            const Mat<S> B = random(rng, tb ? n : k, tb ? k : n).cast<S>();
            const Mat<S> G = random(rng, m, n).cast<S>();
            const Mat<S> opA = ta ? Mat<S>(A.transpose()) : A;
            const Mat<S> opB = tb ? Mat<S>(B.transpose()) : B;
            ad::Tape<S> tape;
            for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses the buffers
                tape.clear();
                auto a = tape.variable(A), b = tape.variable(B);
                auto y = ad::matmul(a, b, ta, tb);
                tape.vjp(y, G);
                const S tol = std::is_same_v<S, float> ? S(1e-4) : S(1e-12);
                CHECK(y.value().isApprox(opA * opB, tol));
                const Mat<S> dopA = G * opB.transpose(), dopB = opA.transpose() * G;
                CHECK(a.adjoint().isApprox(ta ? Mat<S>(dopA.transpose()) : dopA, tol));
                CHECK(b.adjoint().isApprox(tb ? Mat<S>(dopB.transpose()) : dopB, tol));
            }
        }
    Eigen::setNbThreads(0);
}

TEST_CASE("Hessian-vector products equal central differences of gradients", "[autodiff][hvp]") {
    scaltra::Rng rng(10);
    const Index n = 12;
    const Mat<double> W = random(rng, 5, n), A = random(rng, n, n);
    const std::vector<Index> labels{1, 0, 2, 1};
    // A small network-like function of x: every op kind on the way.
    auto record = [&](auto x) {
        using T = typename decltype(x)::Scalar;
        auto& t = x.tape();
        auto h = ad::tanh(ad::matmul(t.constant(W.cast<T>()), x));
        auto stacked = ad::concat_rows(ad::softplus(x), ad::exp(h));  // 17×1
        auto logits = ad::reshape(ad::slice(stacked, 0, 0, 16, 1), 4, 4);
        auto quadratic = ad::dot(x, ad::matmul(t.constant(A.cast<T>()), x));
        return ad::softmax_cross_entropy(ad::slice(logits, 0, 0, 3, 4), labels)
               + ad::scale(quadratic, T(0.5)) + ad::sum(ad::sigmoid(ad::square(x)))
               + ad::mean(ad::atan(h));
    };
    const scaltra::Vec<double> x = rng.normal_vector<double>(n), v = rng.normal_vector<double>(n);
    ad::Tape<ad::Dual<double>> tape;
    scaltra::Vec<double> g(n), hv(n);
    const double f = ad::hessian_vector_product<double>(tape, record, x, v, g, hv);

    auto gradient_at = [&](const scaltra::Vec<double>& at) {
        ad::Tape<double> plain;
        auto leaf = plain.variable(at);
        auto root = record(leaf);
        plain.backward(root);
        return std::pair{root.value()(0, 0), scaltra::Vec<double>(leaf.adjoint())};
    };
    const auto [f0, g0] = gradient_at(x);
    CHECK(f == Approx(f0).epsilon(1e-14));
    CHECK((g - g0).norm() < 1e-14 * (1 + g0.norm()));
    const double h = 1e-5;
    const scaltra::Vec<double> fd =
        (gradient_at(x + h * v).second - gradient_at(x - h * v).second) / (2 * h);
    CHECK((hv - fd).norm() < 1e-7 * (1 + fd.norm()));

    // On a quadratic ½xᵀAx the product is exactly ½(A + Aᵀ)v.
    auto quad = [&](auto y) {
        using T = typename decltype(y)::Scalar;
        return ad::scale(ad::dot(y, ad::matmul(y.tape().constant(A.cast<T>()), y)), T(0.5));
    };
    ad::hessian_vector_product<double>(tape, quad, x, v, g, hv);
    CHECK(hv.isApprox(0.5 * (A + A.transpose()) * v, 1e-12));
    CHECK_THROWS_AS(ad::hessian_vector_product<double>(tape, quad, x, v.head(3), g, hv),
                    scaltra::DimensionMismatch);
}

TEST_CASE("a tape recording is an Objective: Adam trains a small MLP through it", "[autodiff]") {
    scaltra::Layout layout;
    layout.add("W1", 16, 8).add("b1", 16).add("W2", 3, 16).add("b2", 3);
    scaltra::Rng rng(11);
    const Mat<float> X = random(rng, 8, 32).cast<float>();
    std::vector<Index> labels(32);
    for (Index j = 0; j < 32; ++j)  // a learnable rule: the largest of three features
        X.col(j).head(3).maxCoeff(&labels[static_cast<std::size_t>(j)]);
    scaltra::Vec<float> w = rng.normal_vector<float>(layout.size(), 0.0f, 0.3f);
    ad::Tape<float> tape;
    auto objective = [&](const auto& at, auto& grad) {
        tape.clear();
        auto layer = [&](ad::Var<float> in, const char* W, const char* b) {
            return ad::matmul(tape.leaf(at, grad, layout.at(W)), in)
                   + tape.leaf(at, grad, layout.at(b));
        };
        auto h = ad::tanh(layer(tape.leaf(X.data(), 8, 32), "W1", "b1"));
        auto loss = ad::softmax_cross_entropy(layer(h, "W2", "b2"), labels);
        tape.backward(loss);
        return loss.value()(0, 0);
    };
    scaltra::Adam<float> opt(layout, {.lr = 0.02});
    const float first = opt.step(w, objective);
    float last = first;
    for (int t = 0; t < 300; ++t)
        last = opt.step(w, objective);
    CHECK(last < 0.2f * first);
}
