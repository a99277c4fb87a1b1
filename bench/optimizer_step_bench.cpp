// One step (`update(x, g)`) of every optimizer for float n = 1e4, 1e6, 1e7, beside
// a STREAM triad in the same binary, so each step's share of the memory bandwidth
// comes from one run. Bytes are counted as the streams the update must move (each
// array read or written once, STREAM's convention: the triad is 3 streams, Adam 7
// — x, m, v read and written, g read; SCALTRA 11 — x, m, b and meta-Adam's two
// moments of b read and written, g read). The finiteness check of g is a further
// read that is not counted.
//
// DCO (frozen φ): DCOG reads x, g and its rates 1/Λ² and writes x (4 streams),
// DCOM also reads M and reads and writes S (7); normalised gradients add a read
// of g for its norm (5 and 8). DCOGD's step is a p×p matrix-vector product (p²
// floats read). BM_MetaTrain is Algorithm 1 itself: 20 meta-epochs over 100
// least-squares tasks (X 100×100), T = 1, one thread, the 1 s aim.
//
// LODO moves its meta-state, not n-vectors: with M = N·h·k meta-parameters its
// step (fused) reads θ four times (the hypergradient's forward and backward
// passes, the move's forward and backward passes), writes it once, reads and writes
// meta-Adam's two moments, stores and rereads the forward activations p_i, q_i
// (M/2 each way) and reads the permutations (N·h 32-bit indices, M/4) four
// times: 11·M floats. Its bound is those bytes over the triad's bandwidth at
// n = 1e7 (out of cache) in the same run.
//
//   build/release/bench/optimizer_step_bench --benchmark_repetitions=3
//       --benchmark_report_aggregates_only=true
#include <cstdint>
#include <vector>

#include <scaltra/core/rng.hpp>
#include <scaltra/data/synthetic.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/train/meta_train.hpp>

#include <benchmark/benchmark.h>

namespace {

using S = float;
using scaltra::Index;
using scaltra::Vec;

void set_bytes(benchmark::State& state, Index n, int streams) {
    state.SetBytesProcessed(state.iterations() * n * streams * static_cast<Index>(sizeof(S)));
}

// a ← b + s·c, one fused pass.
void BM_StreamTriad(benchmark::State& state) {
    const Index n = state.range(0);
    Vec<S> a = Vec<S>::Zero(n), b = Vec<S>::Ones(n), c = Vec<S>::Ones(n);
    const S s = S(0.5);
    for (auto _ : state) {
        a.noalias() = b + s * c;
        benchmark::DoNotOptimize(a.data());
        benchmark::ClobberMemory();
    }
    set_bytes(state, n, 3);
}

template <class Opt>
void run_steps(benchmark::State& state, Opt opt, int streams) {
    const Index n = state.range(0);
    scaltra::Rng rng(1);
    Vec<S> x = rng.normal_vector<S>(n);
    const Vec<S> g = rng.normal_vector<S>(n, S(0), S(1e-3));
    for (auto _ : state) {
        opt.update(x, g);
        benchmark::DoNotOptimize(x.data());
        benchmark::ClobberMemory();
    }
    set_bytes(state, n, streams);
}

void BM_Sgd(benchmark::State& state) {
    run_steps(state, scaltra::Sgd<S>(state.range(0), {.lr = 1e-3}), 3);
}
void BM_SgdMomentum(benchmark::State& state) {
    run_steps(state, scaltra::Sgd<S>(state.range(0), {.lr = 1e-3, .momentum = 0.9}), 5);
}
void BM_Adam(benchmark::State& state) {
    run_steps(state, scaltra::Adam<S>(state.range(0)), 7);
}
void BM_AdamW(benchmark::State& state) {
    run_steps(state, scaltra::AdamW<S>(state.range(0)), 7);
}
void BM_RmsProp(benchmark::State& state) {
    run_steps(state, scaltra::RmsProp<S>(state.range(0)), 5);
}
void BM_AdaGrad(benchmark::State& state) {
    run_steps(state, scaltra::AdaGrad<S>(state.range(0)), 5);
}
void BM_Scaltra(benchmark::State& state) {
    run_steps(state, scaltra::Scaltra<S>(state.range(0)), 11);
}
// Rank 4: B is n×4, the step goes through a 4×4 capacitance matrix (Woodbury).
// Streams: x, g, m read and x, m written, and B with its two meta-Adam moments
// read and written (3·4 each way): 29.
void BM_ScaltraRank4(benchmark::State& state) {
    run_steps(state, scaltra::Scaltra<S>(state.range(0), {.rank = 4}), 29);
}

void BM_Dcog(benchmark::State& state) {
    run_steps(state, scaltra::Dcog<S>(state.range(0), {.normalize_gradient = false}), 4);
}
void BM_DcogNormalized(benchmark::State& state) {
    run_steps(state, scaltra::Dcog<S>(state.range(0)), 5);
}
void BM_Dcom(benchmark::State& state) {
    run_steps(state, scaltra::Dcom<S>(state.range(0), {.normalize_gradient = false}), 7);
}
void BM_DcomNormalized(benchmark::State& state) {
    run_steps(state, scaltra::Dcom<S>(state.range(0)), 8);
}
void BM_Dcogd(benchmark::State& state) {
    const Index p = state.range(0);
    run_steps(state, scaltra::Dcogd<S>(p, {.normalize_gradient = false}), 0);
    state.SetBytesProcessed(state.iterations() * p * p * static_cast<Index>(sizeof(S)));
}

template <class Opt>
void run_meta_train(benchmark::State& state) {
    using T = typename Opt::Scalar;
    scaltra::Rng rng(1);
    std::vector<scaltra::data::LeastSquaresTask<T>> tasks;
    for (Index i = 0; i < state.range(0); ++i)
        tasks.push_back(scaltra::data::least_squares_task<T>(rng));
    for (auto _ : state) {
        Opt opt(100, {.lr = T(0.1)});
        const auto result = scaltra::meta_train(opt, tasks, {.epochs = 20, .threads = 1});
        benchmark::DoNotOptimize(result.loss);
    }
}
void BM_MetaTrainDcog(benchmark::State& state) {
    run_meta_train<scaltra::Dcog<S>>(state);
}
void BM_MetaTrainDcogDouble(benchmark::State& state) {
    run_meta_train<scaltra::Dcog<double>>(state);
}
void BM_MetaTrainDcogd(benchmark::State& state) {
    run_meta_train<scaltra::Dcogd<S>>(state);
}

// One of LODO's permutation passes, out[t] = u[perm[t]] over a hidden vector of
// h floats (h = 2e5 and 2e6 are n = 1e5 and 1e6): the random access the bench
// above pays 4·N times per step. items_per_second is elements gathered.
void BM_PermutedGather(benchmark::State& state) {
    const Index h = state.range(0);
    scaltra::Rng rng(1);
    std::vector<std::uint32_t> perm;
    for (Index t : rng.permutation(h))
        perm.push_back(static_cast<std::uint32_t>(t));
    const Vec<S> u = rng.normal_vector<S>(h);
    Vec<S> out(h);
    for (auto _ : state) {
        for (Index t = 0; t < h; ++t)
            out[t] = u[perm[static_cast<std::size_t>(t)]];
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * h);
}

// LODO with the defaults (N = 16, k = 4): M = 16·h·4, h = 2n + 4 − (2n mod 4).
// A step's traffic (README, LODO's cost): θ read four times and written once,
// Adam's two moments read and written, the stored layer inputs written and
// reread (M/2 each way) and the 32-bit permutations read four times (M/4 each):
// 9·M entries of meta-state and 2·M floats. BM_LodoButterfly has the butterfly
// permutations instead of the random ones, BM_LodoCompact (CompactLodo) its
// meta-state in bfloat16.
template <class Lodo>
void run_lodo(benchmark::State& state, scaltra::LodoPermutations permutations) {
    const Index n = state.range(0);
    Lodo opt(n, {.permutations = permutations});
    const Index meta = opt.rule().meta_layout().size();
    scaltra::Rng rng(1);
    Vec<S> x = rng.normal_vector<S>(n);
    const Vec<S> g = rng.normal_vector<S>(n, S(0), S(1e-3));
    // The first step has no hypergradient; the second sizes and first touches the
    // meta-optimizer's moments and the stored layer inputs (a page fault per 4 KiB,
    // about 0.3 s at n = 1e6, where the bench runs one iteration), so neither is timed.
    opt.update(x, g);
    opt.update(x, g);
    for (auto _ : state) {
        opt.update(x, g);
        benchmark::DoNotOptimize(x.data());
        benchmark::ClobberMemory();
    }
    using Stored = scaltra::stored_scalar_t<typename Lodo::MetaOptimizer>;
    const Index bytes = 9 * static_cast<Index>(sizeof(Stored)) + 2 * static_cast<Index>(sizeof(S));
    state.SetBytesProcessed(state.iterations() * bytes * meta);
    state.counters["meta_params"] = static_cast<double>(meta);
}
void BM_Lodo(benchmark::State& state) {
    run_lodo<scaltra::Lodo<S>>(state, scaltra::LodoPermutations::random);
}
void BM_LodoButterfly(benchmark::State& state) {
    run_lodo<scaltra::Lodo<S>>(state, scaltra::LodoPermutations::butterfly);
}
void BM_LodoCompact(benchmark::State& state) {
    run_lodo<scaltra::CompactLodo<S>>(state, scaltra::LodoPermutations::random);
}

#define SCALTRA_SIZES ->Arg(10'000)->Arg(1'000'000)->Arg(10'000'000)->UseRealTime()
BENCHMARK(BM_StreamTriad) SCALTRA_SIZES;
BENCHMARK(BM_Sgd) SCALTRA_SIZES;
BENCHMARK(BM_SgdMomentum) SCALTRA_SIZES;
BENCHMARK(BM_Adam) SCALTRA_SIZES;
BENCHMARK(BM_AdamW) SCALTRA_SIZES;
BENCHMARK(BM_RmsProp) SCALTRA_SIZES;
BENCHMARK(BM_AdaGrad) SCALTRA_SIZES;
BENCHMARK(BM_Scaltra) SCALTRA_SIZES;
BENCHMARK(BM_ScaltraRank4) SCALTRA_SIZES;
BENCHMARK(BM_Dcog) SCALTRA_SIZES;
BENCHMARK(BM_DcogNormalized) SCALTRA_SIZES;
BENCHMARK(BM_Dcom) SCALTRA_SIZES;
BENCHMARK(BM_DcomNormalized) SCALTRA_SIZES;
#undef SCALTRA_SIZES
BENCHMARK(BM_Adam)->Arg(100'000)->UseRealTime();
BENCHMARK(BM_Dcogd)->Arg(100)->Arg(1000)->UseRealTime();
BENCHMARK(BM_MetaTrainDcog)->Arg(100)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MetaTrainDcogDouble)->Arg(100)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MetaTrainDcogd)->Arg(100)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PermutedGather)->Arg(200'000)->Arg(2'000'000)->UseRealTime();
BENCHMARK(BM_Lodo)->Arg(100'000)->Arg(1'000'000)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LodoButterfly)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LodoCompact)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
