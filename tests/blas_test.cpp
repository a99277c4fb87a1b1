// The tape's products and an MLP's gradients when Eigen routes products to
// OpenBLAS (EIGEN_USE_BLAS, the benchmarks' and examples' configuration), checked
// against plain loops and central differences, at one and two threads.
#include <vector>

#include <scaltra/autodiff.hpp>
#include <scaltra/core/rng.hpp>
#include <scaltra/core/threads.hpp>
#include <scaltra/nn.hpp>

#include <catch2/catch.hpp>

#ifndef EIGEN_USE_BLAS
#error "blas_test must be built with EIGEN_USE_BLAS (the scaltra_openblas target)"
#endif

using scaltra::Index;
using scaltra::Mat;
namespace ad = scaltra::ad;

namespace {
template <class S>
Mat<S> naive_product(const Mat<S>& A, const Mat<S>& B) {
    Mat<S> C = Mat<S>::Zero(A.rows(), B.cols());
    for (Index i = 0; i < A.rows(); ++i)
        for (Index j = 0; j < B.cols(); ++j)
            for (Index p = 0; p < A.cols(); ++p)
                C(i, j) += A(i, p) * B(p, j);
    return C;
}
}  // namespace

TEMPLATE_TEST_CASE("OpenBLAS products on the tape match plain loops, forward and backward",
                   "[blas]", float, double) {
    using S = TestType;
    const int threads = GENERATE(1, 2);
    scaltra::set_threads(threads);
    INFO("threads " << threads);
    const Index m = 67, k = 45, n = 38;
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            INFO("transpose a " << ta << ", b " << tb);
            const Mat<S> A = Mat<S>::Random(ta ? k : m, ta ? m : k);
            const Mat<S> B = Mat<S>::Random(tb ? n : k, tb ? k : n);
            const Mat<S> G = Mat<S>::Random(m, n);
            const Mat<S> opA = ta ? Mat<S>(A.transpose()) : A;
            const Mat<S> opB = tb ? Mat<S>(B.transpose()) : B;
            ad::Tape<S> tape;
            auto a = tape.variable(A), b = tape.variable(B);
            auto y = ad::matmul(a, b, ta, tb);
            tape.vjp(y, G);
            const S tol = std::is_same_v<S, float> ? S(1e-5) : S(1e-13);
            CHECK(y.value().isApprox(naive_product<S>(opA, opB), tol));
            const Mat<S> dopA = naive_product<S>(G, Mat<S>(opB.transpose()));
            const Mat<S> dopB = naive_product<S>(Mat<S>(opA.transpose()), G);
            CHECK(a.adjoint().isApprox(ta ? Mat<S>(dopA.transpose()) : dopA, tol));
            CHECK(b.adjoint().isApprox(tb ? Mat<S>(dopB.transpose()) : dopB, tol));
        }
    scaltra::set_threads(1);
}

TEST_CASE("an MLP's gradient through OpenBLAS matches central differences", "[blas]") {
    scaltra::Rng rng(2);
    scaltra::nn::Mlp<double> model({40, 50, 10}, scaltra::nn::Relu{}, 5);
    const scaltra::Vec<double> w = model.init();
    const Mat<double> X = Mat<double>::Random(40, 64);
    std::vector<Index> labels(64);
    for (auto& l : labels)
        l = static_cast<Index>(rng.below(10));
    scaltra::Vec<double> g = scaltra::Vec<double>::Zero(w.size()), scratch(w.size());
    model.loss_and_grad(w, X, labels, g);
    double worst = 0;
    for (Index i = 0; i < w.size(); i += 37) {
        scaltra::Vec<double> up = w, down = w;
        up[i] += 1e-6;
        down[i] -= 1e-6;
        scratch.setZero();
        const double fu = model.loss_and_grad(up, X, labels, scratch);
        scratch.setZero();
        const double fd = (fu - model.loss_and_grad(down, X, labels, scratch)) / 2e-6;
        worst = std::max(worst, std::abs(fd - g[i]) / std::max(1.0, std::abs(fd)));
    }
    CHECK(worst < 1e-7);
}
