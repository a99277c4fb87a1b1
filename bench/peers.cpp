// scaltra beside libtorch (torch::optim and torch::nn), measured in one binary and one
// run on the same machine, and the ratios written as a markdown table:
//
//   build/release/bench/peers [--runs K] [--markdown FILE] [--readme README.md]
//                             [--data DIR] [Google Benchmark flags]
//
// 1. Optimizer steps (float) of SGD, momentum, Adam and RMSProp at n = 1e5, 1e6, 1e7,
//    one thread: scaltra's `update(x, g)`, torch::optim's `step()` and a fused loop —
//    the same update written as one pass over its arrays, which is the bound a
//    memory-bound step can reach (SGD reads x, g and writes x: 3 streams; momentum 5;
//    Adam 7; RMSProp 5). libtorch is called as its users call it: the parameter is a
//    leaf tensor with requires_grad, its .grad holds g, and `step()` runs in place under
//    a NoGradGuard (torch::optim's own steps also take one); nothing is reallocated
//    between steps but what torch's step allocates itself.
// 2. The 784-256-128-10 ReLU MLP of the Fashion-MNIST example: forward and backward of
//    a batch of 128 (scaltra's nn::Mlp on its tape against a torch::nn::Sequential of
//    Linear and ReLU with cross_entropy and backward()), and one epoch of Adam training
//    on Fashion-MNIST's 60,000 images (scaltra's fit against the loop a libtorch user
//    writes: index_select a shuffled batch, zero_grad, forward, backward, step), each at
//    1 and 2 threads (scaltra::set_threads and torch::set_num_threads; both use
//    OpenMP and OpenBLAS here).
// 3. Agreement: 100 steps of float Adam alone on one gradient sequence (n = 1e5), and
//    100 Adam steps of that MLP from the same weights on the same batches, each side
//    with its own gradients (after 1, 10 and 100 steps, since rounding differences in
//    the gradients grow along a training trajectory): ‖w_scaltra − w_torch‖ / ‖w_torch‖.
//
// Each benchmark runs `--benchmark_repetitions` times (5 unless given); the table has
// medians and, for every ratio, the ratio of the medians. --runs K (1 unless given)
// runs the whole set K times in a row, and the table gives the first run's figures and,
// beside each ratio, its lowest and highest value over the K runs. --markdown writes
// the table to FILE; --readme replaces the part of a README between the lines
// "<!-- peers:begin -->" and "<!-- peers:end -->" with it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <scaltra/core/rng.hpp>
#include <scaltra/core/threads.hpp>
#include <scaltra/data/fashion_mnist.hpp>
#include <scaltra/nn/mlp.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/train/fit.hpp>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace {

using S = float;
using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;

constexpr S kLr = S(1e-3), kMomentum = S(0.9), kAlpha = S(0.99), kBeta1 = S(0.9),
            kBeta2 = S(0.999), kEps = S(1e-8);
constexpr Index kBatch = 128;

std::string g_data_dir;

void one_thread() {
    scaltra::set_threads(1);
    torch::set_num_threads(1);
}

// ---------------------------------------------------------------------------
// 1. Optimizer steps
// ---------------------------------------------------------------------------

enum class Rule { sgd, momentum, adam, rmsprop };

/// x and a gradient g of size n, as scaltra sees them.
struct StepData {
    Vec<S> x, g;
    explicit StepData(Index n) {
        scaltra::Rng rng(1);
        x = rng.normal_vector<S>(n);
        g = rng.normal_vector<S>(n, S(0), S(1e-3));
    }
};

void scaltra_steps(benchmark::State& state, Rule rule) {
    one_thread();
    StepData d(state.range(0));
    auto run = [&](auto opt) {
        for (auto _ : state) {
            opt.update(d.x, d.g);
            benchmark::ClobberMemory();
        }
    };
    const Index n = state.range(0);
    switch (rule) {
        case Rule::sgd:
            return run(scaltra::Sgd<S>(n, {.lr = kLr}));
        case Rule::momentum:
            return run(scaltra::Sgd<S>(n, {.lr = kLr, .momentum = kMomentum}));
        case Rule::adam:
            return run(scaltra::Adam<S>(n, {.lr = kLr, .beta1 = kBeta1, .beta2 = kBeta2,
                                            .eps = kEps}));
        case Rule::rmsprop:
            return run(scaltra::RmsProp<S>(n, {.lr = kLr, .alpha = kAlpha, .eps = kEps}));
    }
}

/// A leaf parameter tensor over a copy of x, whose .grad is a copy of g.
torch::Tensor torch_parameter(const StepData& d) {
    const auto n = static_cast<std::int64_t>(d.x.size());
    torch::Tensor p = torch::from_blob(const_cast<S*>(d.x.data()), {n}).clone();
    p.set_requires_grad(true);
    p.mutable_grad() = torch::from_blob(const_cast<S*>(d.g.data()), {n}).clone();
    return p;
}

void torch_steps(benchmark::State& state, Rule rule) {
    one_thread();
    StepData d(state.range(0));
    std::vector<torch::Tensor> params{torch_parameter(d)};
    auto run = [&](auto opt) {
        torch::NoGradGuard no_grad;
        for (auto _ : state) {
            opt.step();
            benchmark::ClobberMemory();
        }
    };
    namespace optim = torch::optim;
    switch (rule) {
        case Rule::sgd:
            return run(optim::SGD(params, optim::SGDOptions(kLr)));
        case Rule::momentum:
            return run(optim::SGD(params, optim::SGDOptions(kLr).momentum(kMomentum)));
        case Rule::adam:
            return run(optim::Adam(
                params, optim::AdamOptions(kLr).betas({kBeta1, kBeta2}).eps(kEps)));
        case Rule::rmsprop:
            return run(optim::RMSprop(params, optim::RMSpropOptions(kLr).alpha(kAlpha).eps(kEps)));
    }
}

/// The update as one pass over its arrays: the bound of a memory-bound step. The
/// arrays do not alias (restrict) and each loop is vectorised (omp simd; the target
/// builds with -fno-math-errno, so std::sqrt vectorises too).
void fused_steps(benchmark::State& state, Rule rule) {
    StepData d(state.range(0));
    const Index n = state.range(0);
    S* __restrict x = d.x.data();
    const S* __restrict g = d.g.data();
    Vec<S> m = Vec<S>::Zero(n), v = Vec<S>::Zero(n);
    S* __restrict ms = m.data();
    S* __restrict vs = v.data();
    S beta1_t = 1, beta2_t = 1;
    for (auto _ : state) {
        switch (rule) {
            case Rule::sgd:
#pragma omp simd
                for (Index i = 0; i < n; ++i)
                    x[i] -= kLr * g[i];
                break;
            case Rule::momentum:
#pragma omp simd
                for (Index i = 0; i < n; ++i) {
                    ms[i] = kMomentum * ms[i] + g[i];
                    x[i] -= kLr * ms[i];
                }
                break;
            case Rule::adam: {  // torch's form: lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
                beta1_t *= kBeta1;
                beta2_t *= kBeta2;
                const S step = kLr / (1 - beta1_t), root = 1 / std::sqrt(1 - beta2_t);
#pragma omp simd
                for (Index i = 0; i < n; ++i) {
                    ms[i] = kBeta1 * ms[i] + (1 - kBeta1) * g[i];
                    vs[i] = kBeta2 * vs[i] + (1 - kBeta2) * g[i] * g[i];
                    x[i] -= step * ms[i] / (std::sqrt(vs[i]) * root + kEps);
                }
                break;
            }
            case Rule::rmsprop:
#pragma omp simd
                for (Index i = 0; i < n; ++i) {
                    vs[i] = kAlpha * vs[i] + (1 - kAlpha) * g[i] * g[i];
                    x[i] -= kLr * g[i] / (std::sqrt(vs[i]) + kEps);
                }
                break;
        }
        benchmark::ClobberMemory();
    }
}

// ---------------------------------------------------------------------------
// 2. The MLP
// ---------------------------------------------------------------------------

const std::vector<Index> kSizes{784, 256, 128, 10};

/// Fashion-MNIST's training set, loaded once for all benchmarks.
const scaltra::data::LabelledSet<S>& train_set() {
    static const scaltra::data::LabelledSet<S> set =
        scaltra::data::load_fashion_mnist<S>(g_data_dir).train;
    return set;
}

/// The same network in torch, with scaltra's weights copied in: scaltra's W (out × in,
/// column-major) is torch's weight (out × in, row-major) transposed in memory.
torch::nn::Sequential torch_mlp(const scaltra::nn::Mlp<S>& model, const Vec<S>& w) {
    torch::nn::Sequential net;
    for (std::size_t l = 0; l + 1 < kSizes.size(); ++l) {
        if (l > 0)
            net->push_back(torch::nn::ReLU());
        torch::nn::Linear linear(kSizes[l], kSizes[l + 1]);
        const auto& W = model.layout()[2 * l];
        const auto& b = model.layout()[2 * l + 1];
        torch::NoGradGuard no_grad;
        linear->weight.copy_(torch::from_blob(const_cast<S*>(w.data() + W.offset),
                                              {W.cols, W.rows})
                                 .t());
        linear->bias.copy_(torch::from_blob(const_cast<S*>(w.data() + b.offset), {b.rows}));
        net->push_back(linear);
    }
    return net;
}

/// torch's parameters, flattened in scaltra's layout (for comparing the two).
Vec<S> torch_weights(torch::nn::Sequential& net) {
    std::vector<S> out;
    for (const auto& p : net->parameters()) {
        torch::Tensor t = p.dim() == 2 ? p.detach().t().contiguous() : p.detach().contiguous();
        out.insert(out.end(), t.data_ptr<S>(), t.data_ptr<S>() + t.numel());
    }
    return Eigen::Map<Vec<S>>(out.data(), static_cast<Index>(out.size()));
}

/// A batch of the first kBatch images: scaltra's features × batch is torch's
/// batch × features.
struct Batch {
    Mat<S> X;
    std::vector<Index> labels;
    torch::Tensor inputs, targets;
    Batch(const scaltra::data::LabelledSet<S>& set, Index first)
        : X(set.inputs.middleCols(first, kBatch)),
          labels(set.labels.begin() + first, set.labels.begin() + first + kBatch) {
        inputs = torch::from_blob(X.data(), {kBatch, X.rows()});
        std::vector<std::int64_t> l(labels.begin(), labels.end());
        targets = torch::tensor(l, torch::kLong);
    }
};

void threads(benchmark::State& state) {
    const int k = static_cast<int>(state.range(0));
    scaltra::set_threads(k);
    torch::set_num_threads(k);
}

void BM_ScaltraForwardBackward(benchmark::State& state) {
    threads(state);
    scaltra::nn::Mlp<S> model(kSizes, scaltra::nn::Relu{}, 1);
    const Vec<S> w = model.init();
    Vec<S> grad = Vec<S>::Zero(w.size());
    const Batch batch(train_set(), 0);
    for (auto _ : state) {
        grad.setZero();
        benchmark::DoNotOptimize(model.loss_and_grad(w, batch.X, batch.labels, grad));
        benchmark::ClobberMemory();
    }
}

void BM_TorchForwardBackward(benchmark::State& state) {
    threads(state);
    scaltra::nn::Mlp<S> model(kSizes, scaltra::nn::Relu{}, 1);
    auto net = torch_mlp(model, model.init());
    const Batch batch(train_set(), 0);
    for (auto _ : state) {
        net->zero_grad();
        auto loss = torch::nn::functional::cross_entropy(net->forward(batch.inputs),
                                                         batch.targets);
        loss.backward();
        benchmark::DoNotOptimize(loss.item<S>());
    }
}

void BM_ScaltraAdamEpoch(benchmark::State& state) {
    threads(state);
    const auto& set = train_set();
    scaltra::nn::Mlp<S> model(kSizes, scaltra::nn::Relu{}, 1);
    std::uint64_t seed = 0;
    for (auto _ : state) {
        state.PauseTiming();
        Vec<S> w = model.init();
        scaltra::Adam<S> opt(model.layout(), {.lr = kLr});
        state.ResumeTiming();
        benchmark::DoNotOptimize(
            scaltra::fit(model, opt, w, set, {.epochs = 1, .batch_size = kBatch, .seed = ++seed})
                .history.back()
                .train_loss);
    }
}

void BM_TorchAdamEpoch(benchmark::State& state) {
    threads(state);
    const auto& set = train_set();
    // The images as one batch × features tensor (scaltra's matrix, not copied).
    const torch::Tensor images =
        torch::from_blob(const_cast<S*>(set.inputs.data()), {set.size(), set.inputs.rows()});
    std::vector<std::int64_t> l(set.labels.begin(), set.labels.end());
    const torch::Tensor labels = torch::tensor(l, torch::kLong);
    scaltra::nn::Mlp<S> model(kSizes, scaltra::nn::Relu{}, 1);
    torch::manual_seed(0);
    for (auto _ : state) {
        state.PauseTiming();
        auto net = torch_mlp(model, model.init());
        torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(kLr));
        state.ResumeTiming();
        const torch::Tensor order = torch::randperm(set.size(), torch::kLong);
        torch::Tensor loss;
        for (std::int64_t first = 0; first < set.size(); first += kBatch) {  // as fit: the
            const torch::Tensor which =  // last batch of the epoch is the remainder
                order.narrow(0, first, std::min<std::int64_t>(kBatch, set.size() - first));
            opt.zero_grad();
            loss = torch::nn::functional::cross_entropy(
                net->forward(images.index_select(0, which)), labels.index_select(0, which));
            loss.backward();
            opt.step();
        }
        benchmark::DoNotOptimize(loss.item<S>());
    }
}

// ---------------------------------------------------------------------------
// 3. Agreement
// ---------------------------------------------------------------------------

struct Agreement {
    double mlp[3] = {};  ///< after 1, 10 and 100 steps
    double optimizer = 0;
};

double relative_distance(const Vec<S>& a, const Vec<S>& b) {
    return static_cast<double>((a - b).norm() / b.norm());
}

Agreement agreement() {
    one_thread();
    Agreement out;
    const auto& set = train_set();
    scaltra::nn::Mlp<S> model(kSizes, scaltra::nn::Relu{}, 1);
    Vec<S> w = model.init();
    auto net = torch_mlp(model, w);
    scaltra::Adam<S> opt(model.layout(), {.lr = kLr});
    torch::optim::Adam torch_opt(net->parameters(), torch::optim::AdamOptions(kLr));
    Vec<S> grad(w.size());
    for (Index step = 0; step < 100; ++step) {
        const Batch batch(set, step * kBatch);
        grad.setZero();
        model.loss_and_grad(w, batch.X, batch.labels, grad);
        opt.update(w, grad);
        torch_opt.zero_grad();
        torch::nn::functional::cross_entropy(net->forward(batch.inputs), batch.targets)
            .backward();
        torch_opt.step();
        if (step == 0 || step == 9 || step == 99)
            out.mlp[step == 0 ? 0 : step == 9 ? 1 : 2] = relative_distance(w, torch_weights(net));
    }

    // Adam alone: the same 100 gradients into both.
    const Index n = 100000;
    scaltra::Rng rng(3);
    Vec<S> x = rng.normal_vector<S>(n);
    torch::Tensor p = torch::from_blob(x.data(), {n}).clone();
    p.set_requires_grad(true);
    scaltra::Adam<S> alone(n, {.lr = kLr});
    torch::optim::Adam torch_alone({p}, torch::optim::AdamOptions(kLr));
    for (int step = 0; step < 100; ++step) {
        const Vec<S> g = rng.normal_vector<S>(n, S(0), S(1e-2));
        alone.update(x, g);
        p.mutable_grad() = torch::from_blob(const_cast<S*>(g.data()), {n}).clone();
        torch::NoGradGuard no_grad;
        torch_alone.step();
    }
    out.optimizer = relative_distance(
        x, Eigen::Map<const Vec<S>>(p.detach().data_ptr<S>(), n));
    return out;
}

// ---------------------------------------------------------------------------
// Registration, medians and the table
// ---------------------------------------------------------------------------

constexpr const char* kRuleNames[] = {"SGD", "momentum", "Adam", "RMSProp"};

void register_all() {
    for (int r = 0; r < 4; ++r) {
        const Rule rule = static_cast<Rule>(r);
        for (const char* who : {"scaltra", "torch", "fused"}) {
            const std::string name = std::string("steps/") + kRuleNames[r] + "/" + who;
            auto* b = benchmark::RegisterBenchmark(
                name.c_str(), [rule, who = std::string(who)](benchmark::State& state) {
                    if (who == "scaltra")
                        scaltra_steps(state, rule);
                    else if (who == "torch")
                        torch_steps(state, rule);
                    else
                        fused_steps(state, rule);
                });
            b->Arg(100000)->Arg(1000000)->Arg(10000000)->UseRealTime();
            b->Unit(benchmark::kMicrosecond);
        }
    }
    auto mlp = [](const char* name, void (*f)(benchmark::State&), bool epoch) {
        auto* b = benchmark::RegisterBenchmark(name, f)->Arg(1)->Arg(2)->UseRealTime();
        b->Unit(benchmark::kMillisecond);
        if (epoch)
            b->Iterations(1);
    };
    mlp("mlp/forward_backward/scaltra", BM_ScaltraForwardBackward, false);
    mlp("mlp/forward_backward/torch", BM_TorchForwardBackward, false);
    mlp("mlp/adam_epoch/scaltra", BM_ScaltraAdamEpoch, true);
    mlp("mlp/adam_epoch/torch", BM_TorchAdamEpoch, true);
}

/// Prints as the console reporter does, and keeps each benchmark's median real time
/// (seconds) and its spread over the repetitions.
class MedianCollector : public benchmark::ConsoleReporter {
public:
    struct Figure {
        double median = 0, min = 0, max = 0;
    };
    std::map<std::string, Figure> figures;  ///< by run name, e.g. "steps/Adam/torch/100000"

    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            // "steps/Adam/torch/100000": without "/iterations:1" or "/real_time"
            const std::string name = run.run_name.function_name + "/" + run.run_name.args;
            const double seconds = run.GetAdjustedRealTime()
                                   / benchmark::GetTimeUnitMultiplier(run.time_unit);
            Figure& f = figures[name];
            if (run.run_type == Run::RT_Aggregate) {
                if (run.aggregate_name == "median")
                    f.median = seconds;
            } else {
                f.min = f.min == 0 ? seconds : std::min(f.min, seconds);
                f.max = std::max(f.max, seconds);
                if (f.median == 0)
                    f.median = seconds;  // one repetition: no aggregate follows
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

std::string fixed(double v, int digits) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", digits, v);
    return text;
}

/// The table of run 0's figures; beside each ratio and agreement, when there are several
/// runs, its lowest and highest value over all of them.
std::string table(const std::vector<MedianCollector>& runs,
                  const std::vector<Agreement>& agreements) {
    auto at = [&](std::size_t r, const std::string& name) {
        const auto it = runs[r].figures.find(name);
        return it == runs[r].figures.end() ? 0.0 : it->second.median;
    };
    auto spread = [&](const std::string& name) {
        const auto it = runs[0].figures.find(name);
        if (it == runs[0].figures.end() || it->second.median == 0)
            return std::string("—");
        return fixed(100 * (it->second.max - it->second.min) / it->second.median, 0) + "%";
    };
    // f(r) for run 0, and "(lowest–highest)" over the runs when there are several.
    auto with_range = [&](auto f, auto format) {
        std::string text = format(f(0));
        if (runs.size() < 2)
            return text;
        double lo = f(0), hi = f(0);
        for (std::size_t r = 1; r < runs.size(); ++r) {
            lo = std::min(lo, f(r));
            hi = std::max(hi, f(r));
        }
        return text + " (" + format(lo) + "–" + format(hi) + ")";
    };
    auto ratio = [&](const std::string& num, const std::string& den, const char* unit) {
        return with_range([&](std::size_t r) { return at(r, num) / at(r, den); },
                          [&](double v) { return fixed(v, 2) + unit; });
    };
    auto exponent = [&](auto figure) {
        return with_range([&](std::size_t r) { return figure(agreements[r]); },
                          [](double v) {
                              char text[32];
                              std::snprintf(text, sizeof text, "%.2e", v);
                              return std::string(text);
                          });
    };
    const std::string over_runs =
        runs.size() < 2 ? std::string()
                        : "; in brackets, each ratio's lowest and highest value over " +
                              std::to_string(runs.size()) + " runs of the whole set in a row "
                              "(the other figures are the first run's)";
    std::ostringstream md;
    md << "Optimizer steps, float, one thread; µs per step (median), and ratios of "
          "medians. *fused* is the update as one pass over its arrays, the bound; spread "
          "is (max − min)/median over the repetitions of scaltra's step"
       << over_runs
       << ".\n\n"
          "| step | n | scaltra µs | torch::optim µs | fused µs | torch / scaltra "
          "| scaltra / fused | spread |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    const std::pair<const char*, const char*> sizes[] = {
        {"100000", "1e5"}, {"1000000", "1e6"}, {"10000000", "1e7"}};
    for (const char* rule : kRuleNames) {
        for (const auto& [n, label] : sizes) {
            const std::string base = std::string("steps/") + rule + "/";
            const std::string ours = base + "scaltra/" + n, theirs = base + "torch/" + n,
                              bound = base + "fused/" + n;
            if (at(0, ours) == 0)
                continue;
            md << "| " << rule << " | " << label << " | " << fixed(1e6 * at(0, ours), 1)
               << " | " << fixed(1e6 * at(0, theirs), 1) << " | "
               << fixed(1e6 * at(0, bound), 1) << " | " << ratio(theirs, ours, "×") << " | "
               << ratio(ours, bound, "×") << " | " << spread(ours) << " |\n";
        }
    }
    md << "\nThe 784-256-128-10 MLP, batch 128; ms (median) and scaltra / libtorch "
          "(below 1: scaltra is faster).\n\n"
          "| what | threads | scaltra ms | libtorch ms | scaltra / libtorch | spread |\n"
          "| --- | --- | --- | --- | --- | --- |\n";
    for (const char* what : {"forward_backward", "adam_epoch"}) {
        const bool step = what[0] == 'f';
        for (const char* k : {"1", "2"}) {
            const std::string base = std::string("mlp/") + what + "/";
            const std::string ours = base + "scaltra/" + k, theirs = base + "torch/" + k;
            if (at(0, ours) == 0)
                continue;
            md << "| " << (step ? "forward + backward" : "Adam epoch (469 steps)") << " | "
               << k << " | " << fixed(1e3 * at(0, ours), step ? 3 : 1) << " | "
               << fixed(1e3 * at(0, theirs), step ? 3 : 1) << " | "
               << ratio(ours, theirs, "") << " | " << spread(ours) << " |\n";
        }
    }
    md << "\nAgreement of float Adam trajectories, ‖w_scaltra − w_torch‖ / ‖w_torch‖: "
          "Adam alone on the same 100 gradients (n = 1e5) "
       << exponent([](const Agreement& a) { return a.optimizer; })
       << "; the MLP from the same weights on the same batches (each side's own gradients) "
       << exponent([](const Agreement& a) { return a.mlp[0]; }) << " after 1 step, "
       << exponent([](const Agreement& a) { return a.mlp[1]; }) << " after 10, "
       << exponent([](const Agreement& a) { return a.mlp[2]; }) << " after 100.\n";
    return md.str();
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    if (!out)
        throw std::runtime_error("peers: cannot write " + path);
}

/// The README with the text between its peers markers replaced by `md`.
void splice_into(const std::string& path, const std::string& md) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    const std::string text = content.str();
    const std::string begin = "<!-- peers:begin -->\n", end = "<!-- peers:end -->";
    const auto b = text.find(begin), e = text.find(end);
    if (!in || b == std::string::npos || e == std::string::npos || e < b)
        throw std::runtime_error("peers: " + path + " has no <!-- peers:begin --> … "
                                 "<!-- peers:end --> lines");
    write_file(path, text.substr(0, b + begin.size()) + md + text.substr(e));
}

}  // namespace

int main(int argc, char** argv) {
    std::string markdown, readme, runs_text = "1";
    std::vector<char*> args{argv[0]};
    bool repetitions = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--markdown" || a == "--readme" || a == "--data" || a == "--runs")
            && i + 1 < argc) {
            (a == "--markdown" ? markdown
             : a == "--readme" ? readme
             : a == "--runs"   ? runs_text
                               : g_data_dir) = argv[++i];
            continue;
        }
        repetitions = repetitions || a.rfind("--benchmark_repetitions", 0) == 0;
        args.push_back(argv[i]);
    }
    std::string five = "--benchmark_repetitions=5";
    if (!repetitions)
        args.push_back(five.data());
    int count = static_cast<int>(args.size());
    benchmark::Initialize(&count, args.data());
    if (benchmark::ReportUnrecognizedArguments(count, args.data()))
        return 1;
    try {
        char* rest = nullptr;
        const long runs = std::strtol(runs_text.c_str(), &rest, 10);
        if (*rest != '\0' || runs < 1 || runs > 100)
            throw std::invalid_argument("--runs needs a count from 1 to 100, not '" + runs_text
                                        + "'");
        train_set();  // fails here, before any timing, when the data is missing
        register_all();
        std::vector<MedianCollector> collectors(static_cast<std::size_t>(runs));
        std::vector<Agreement> agreements;
        for (MedianCollector& collector : collectors) {
            benchmark::RunSpecifiedBenchmarks(&collector);
            agreements.push_back(agreement());
        }
        const std::string md = table(collectors, agreements);
        std::printf("\n%s", md.c_str());
        if (!markdown.empty())
            write_file(markdown, md);
        if (!readme.empty())
            splice_into(readme, md);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "peers: %s\n", e.what());
        return 1;
    }
    benchmark::Shutdown();
    return 0;
}
