// Forward + backward of a 784-256-128-10 ReLU MLP with softmax cross-entropy at
// batch 128, float: on the autodiff tape, and written by hand with Eigen in the
// same binary, at 1 and 2 threads. The figure of merit is the ratio of their times.
// BM_MlpStep times whole training steps (objective and optimizer) of nn::Mlp on one
// thread, so that APO's look-ahead every K steps is priced against its base
// optimizer's step: the mean over many steps includes the meta-steps.
// Built with OpenBLAS (SCALTRA_OPENBLAS, the default when found) both send their
// products to sgemm; configure with -DSCALTRA_OPENBLAS=OFF for Eigen's own GEMM.
//
//   build/release/bench/tape_mlp_bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true
#include <string>
#include <vector>

#include <scaltra/autodiff.hpp>
#include <scaltra/core/rng.hpp>
#include <scaltra/core/threads.hpp>
#include <scaltra/nn/mlp.hpp>
#include <scaltra/optim/adam.hpp>
#include <scaltra/optim/apo.hpp>

#include <benchmark/benchmark.h>

#ifdef SCALTRA_HAVE_OPENBLAS
extern "C" char* openblas_get_corename(void);  // which kernels OpenBLAS chose (OPENBLAS_CORETYPE)
#endif

namespace {

using S = float;
using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;
namespace ad = scaltra::ad;

constexpr Index kIn = 784, kH1 = 256, kH2 = 128, kOut = 10, kBatch = 128;

struct Problem {
    scaltra::Layout layout;
    Vec<S> w, grad;
    Mat<S> X;
    std::vector<Index> labels;

    Problem() : X(Mat<S>::Random(kIn, kBatch)), labels(kBatch) {
        layout.add("W1", kH1, kIn).add("b1", kH1).add("W2", kH2, kH1).add("b2", kH2);
        layout.add("W3", kOut, kH2).add("b3", kOut);
        scaltra::Rng rng(1);
        w = rng.normal_vector<S>(layout.size(), S(0), S(0.05));
        grad = Vec<S>::Zero(layout.size());
        for (auto& l : labels)
            l = static_cast<Index>(rng.below(kOut));
    }
    auto block(const char* name) { return scaltra::block_view(w, layout.at(name)); }
    auto grad_block(const char* name) { return scaltra::block_view(grad, layout.at(name)); }
};

void BM_TapeMlp(benchmark::State& state) {
    scaltra::set_threads(static_cast<int>(state.range(0)));
    Problem p;
    ad::Tape<S> tape;
    for (auto _ : state) {
        tape.clear();
        p.grad.setZero();
        auto layer = [&](ad::Var<S> in, const char* W, const char* b) {
            return ad::matmul(tape.leaf(p.w, p.grad, p.layout.at(W)), in)
                   + tape.leaf(p.w, p.grad, p.layout.at(b));
        };
        auto h1 = ad::relu(layer(tape.leaf(p.X.data(), kIn, kBatch), "W1", "b1"));
        auto h2 = ad::relu(layer(h1, "W2", "b2"));
        auto loss = ad::softmax_cross_entropy(layer(h2, "W3", "b3"), p.labels);
        tape.backward(loss);
        benchmark::DoNotOptimize(p.grad.data());
    }
}

// The same network and gradient, as one would write it directly with Eigen.
void BM_HandWrittenMlp(benchmark::State& state) {
    scaltra::set_threads(static_cast<int>(state.range(0)));
    Problem p;
    Mat<S> Z1(kH1, kBatch), H1(kH1, kBatch), Z2(kH2, kBatch), H2(kH2, kBatch), Z3(kOut, kBatch);
    Mat<S> dZ3(kOut, kBatch), dH2(kH2, kBatch), dH1(kH1, kBatch);
    for (auto _ : state) {
        p.grad.setZero();
        Z1.noalias() = p.block("W1") * p.X;
        Z1.colwise() += p.block("b1").col(0);
        H1 = Z1.cwiseMax(S(0));
        Z2.noalias() = p.block("W2") * H1;
        Z2.colwise() += p.block("b2").col(0);
        H2 = Z2.cwiseMax(S(0));
        Z3.noalias() = p.block("W3") * H2;
        Z3.colwise() += p.block("b3").col(0);
        S loss = 0;
        for (Index j = 0; j < kBatch; ++j) {  // softmax cross-entropy and its gradient
            const S m = Z3.col(j).maxCoeff();
            dZ3.col(j) = (Z3.col(j).array() - m).exp();
            const S total = dZ3.col(j).sum();
            loss += std::log(total) + m - Z3(p.labels[j], j);
            dZ3.col(j) /= total * kBatch;
            dZ3(p.labels[j], j) -= S(1) / kBatch;
        }
        benchmark::DoNotOptimize(loss);
        p.grad_block("W3").noalias() += dZ3 * H2.transpose();
        p.grad_block("b3") += dZ3.rowwise().sum();
        dH2.noalias() = p.block("W3").transpose() * dZ3;
        dH2 = (Z2.array() > 0).select(dH2, S(0));
        p.grad_block("W2").noalias() += dH2 * H1.transpose();
        p.grad_block("b2") += dH2.rowwise().sum();
        dH1.noalias() = p.block("W2").transpose() * dH2;
        dH1 = (Z1.array() > 0).select(dH1, S(0));
        p.grad_block("W1").noalias() += dH1 * p.X.transpose();
        p.grad_block("b1") += dH1.rowwise().sum();
        benchmark::DoNotOptimize(p.grad.data());
    }
}

// One Adam update of the same network's 235,146 parameters: the optimizer's share
// of a training step is its time over this plus BM_TapeMlp's.
void BM_AdamStepMlp(benchmark::State& state) {
    Problem p;
    p.grad = Vec<S>::Random(p.layout.size());
    scaltra::Adam<S> opt(p.layout);
    for (auto _ : state) {
        opt.update(p.w, p.grad);
        benchmark::DoNotOptimize(p.w.data());
    }
}

// Training steps of the same network on one batch with a probe batch B′ (an
// nn::MlpObjective), one thread; `make(layout)` builds the optimizer.
template <class Make>
void mlp_steps(benchmark::State& state, Make make) {
    scaltra::set_threads(1);
    scaltra::nn::Mlp<S> model({kIn, kH1, kH2, kOut}, scaltra::nn::Relu{}, 1);
    const Mat<S> X = Mat<S>::Random(kIn, kBatch), probe = Mat<S>::Random(kIn, kBatch);
    std::vector<Index> labels(kBatch);
    scaltra::Rng rng(2);
    for (auto& l : labels)
        l = static_cast<Index>(rng.below(kOut));
    scaltra::nn::MlpObjective<S> f(model, X, labels, probe);
    Vec<S> w = model.init();
    auto opt = make(model.layout());
    for (auto _ : state) {
        benchmark::DoNotOptimize(opt.step(w, f));
        benchmark::DoNotOptimize(w.data());
    }
}
void BM_MlpStepMomentum(benchmark::State& state) {
    mlp_steps(state,
              [](const auto& l) { return scaltra::Sgd<S>(l, {.lr = 0.03, .momentum = 0.9}); });
}
void BM_MlpStepApo(benchmark::State& state) {  // K = 10, with and without the FSD term
    const auto fsd = static_cast<S>(state.range(0)) / 10;
    mlp_steps(state, [&](const auto& l) {
        return scaltra::Apo<S>(l, {.base = {.lr = 0.03, .momentum = 0.9}, .lambda_fsd = fsd});
    });
}
void BM_MlpStepAdam(benchmark::State& state) {
    mlp_steps(state, [](const auto& l) { return scaltra::Adam<S>(l); });
}
void BM_MlpStepApoAdam(benchmark::State& state) {
    const auto fsd = static_cast<S>(state.range(0)) / 10;
    mlp_steps(state, [&](const auto& l) {
        return scaltra::Apo<S, scaltra::Adam<S>>(l, {.base = {.lr = 1e-3}, .lambda_fsd = fsd});
    });
}
void BM_MlpStepApoP(benchmark::State& state) {
    const auto fsd = static_cast<S>(state.range(0)) / 10;
    mlp_steps(state, [&](const auto& l) {
        return scaltra::ApoP<S>(l, {.lr = 0.03, .momentum = 0.9, .lambda_fsd = fsd});
    });
}

// The argument is the number of threads (scaltra::set_threads: OpenMP, and OpenBLAS
// when the build uses it).
BENCHMARK(BM_TapeMlp)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HandWrittenMlp)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AdamStepMlp)->UseRealTime()->Unit(benchmark::kMillisecond);
// The APO benchmarks' argument is 10·λ_FSD (0: no function-space term).
BENCHMARK(BM_MlpStepMomentum)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MlpStepApo)->Arg(0)->Arg(3)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MlpStepAdam)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MlpStepApoAdam)->Arg(0)->Arg(3)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MlpStepApoP)->Arg(0)->Arg(3)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
#ifdef SCALTRA_HAVE_OPENBLAS
    benchmark::AddCustomContext("products",
                                std::string("OpenBLAS, ") + openblas_get_corename() + " kernels");
#else
    benchmark::AddCustomContext("products", "Eigen");
#endif
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
