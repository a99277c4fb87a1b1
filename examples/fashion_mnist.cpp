// Trains a 784-256-128-10 ReLU MLP on Fashion-MNIST (Debian's
// dataset-fashion-mnist) with one optimizer or all of them, from the same
// initial weights and the same minibatch order, and prints one comparison
// table; optionally writes CSV logs and a PNG of the curves (through gnuplot).
//
//   fashion_mnist [--optimizer NAME[,NAME…]|all] [--epochs N] [--batch B] [--lr LR]
//                 [--threads T] [--seed S] [--limit N] [--validation N]
//                 [--eval-every K] [--target PERCENT]
//                 [--meta-lr LR] [--beta B] [--gamma-rule sca|geometric] [--epsilon E]
//                 [--rank R] [--b-scale S] [--permutations random|butterfly]
//                 [--meta-state float|bfloat16]
//                 [--interval K] [--lambda-fsd L] [--lambda-wsd L] [--momentum M]
//                 [--max-factor N]
//                 [--data DIR] [--csv DIR] [--plot FILE.png] [--plot-lr FILE.png]
//                 [--checkpoint DIR] [--mpi] [--check-every N]
//
// Each optimizer's default learning rate had the best validation accuracy after
// 2 epochs in the grid {1e-4, 3e-4, 1e-3, …, 3e-1, 1} at batch 128, seed 1, with
// 10,000 training images held out (--validation 10000); README, "The Fashion-MNIST
// example", has the grid. --lr overrides it for all. SCALTRA's --lr is its
// initial learning rate α₀; --meta-lr, --beta, --gamma-rule, --epsilon, --rank and
// --b-scale set its other options (library defaults otherwise). LODO's --lr is its
// α₀ (default 1, the library's, not from the grid); --meta-lr and --beta apply to
// it too, --permutations picks its P_i (the paper's random ones by default) and
// --meta-state bfloat16 stores θ and its Adam moments in bfloat16 (CompactLodo).
// APO's --lr is η₀ (apo: SGD with momentum 0.9, apo-adam: Adam, apo-p: the
// preconditioner with momentum 0.9); --meta-lr, --interval, --lambda-fsd,
// --lambda-wsd, --momentum and (apo-p) --max-factor set its other options, and
// --plot-lr plots the learned learning rates against the step (the --csv step
// logs carry them as columns, `lr` or `lr:<block>`).
//
// --checkpoint DIR saves DIR/<optimizer>.ckpt after every epoch and, when that file
// is there at the start, resumes from it (the same flags give the same run).
// --mpi trains data-parallel over the ranks of `mpirun -np P fashion_mnist --mpi …`
// (a build with MPI: dist/): every rank draws the same minibatch and computes the
// loss and gradient of its 1/P of it, which are averaged, so the run is the
// one-process run up to rounding; the optimizer state is compared across ranks
// every --check-every steps (default 100), and only rank 0 prints and writes.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <scaltra/scaltra.hpp>
#ifdef SCALTRA_EXAMPLE_MPI
#include <mpi.h>

#include <scaltra/dist.hpp>
#endif

#include "example_cli.hpp"

#ifdef SCALTRA_HAVE_OPENBLAS
extern "C" char* openblas_get_corename(void);
#endif

namespace {

using S = float;
using scaltra::Index;
using scaltra::Vec;

struct Settings {
    std::string optimizer = "adam";
    std::int64_t epochs = 2;
    Index batch = 128;
    std::optional<double> lr;
    int threads = 1;
    std::uint64_t seed = 1;
    Index limit = 0;       // 0: the whole training set
    Index validation = 0;  // training examples held out for validation
    Index eval_every = 0;  // steps between test evaluations for "steps to target" (0: none)
    double target = 87;    // test accuracy (%) whose first step is reported
    std::optional<double> meta_lr, beta, epsilon, b_scale;  // SCALTRA's (and LODO's), when set
    std::optional<Index> rank;
    std::optional<scaltra::GammaRule> gamma_rule;
    std::optional<scaltra::LodoPermutations> permutations;  // LODO's
    bool compact_lodo = false;  // LODO's meta-state in bfloat16 (--meta-state bfloat16)
    std::optional<double> lambda_fsd, lambda_wsd, momentum;  // APO's, when set
    std::optional<Index> interval, max_factor;
    std::string data, csv, plot, plot_lr, checkpoint;
    bool mpi = false;
    Index check_every = 100;  // steps between state comparisons across ranks (--mpi)
    bool lead = true;         // this process prints and writes files (rank 0 under --mpi)
};

/// Where nothing goes: the progress and logs of ranks other than 0.
std::ostream& nowhere() {
    static std::ostream sink(nullptr);
    return sink;
}

/// The optimizers this example knows, with their default learning rates.
struct Entry {
    const char* name;
    double lr;
};
constexpr Entry kOptimizers[] = {
    {"sgd", 3e-1},     {"momentum", 3e-2}, {"adam", 1e-3},     {"adamw", 1e-3},
    {"rmsprop", 1e-3}, {"adagrad", 1e-2},  {"scaltra", 0.5},   {"scaltra-matrix", 0.5},
    {"lodo", 1.0},     {"apo", 3e-2},      {"apo-adam", 1e-3}, {"apo-p", 3e-2},
};

/// One optimizer's run: the table row and the curves for the plot.
struct Run {
    std::string name;
    double lr;
    scaltra::FitResult result;
    std::vector<S> step_losses;
    std::int64_t steps_to_target = -1;         // first evaluated step at the target accuracy
    std::vector<std::string> learned_names;    // a learned optimizer's for_each_learned
    std::vector<std::vector<double>> learned;  // per step, in that order
};

/// Keeps every step's minibatch loss for the plot and, every `eval_every` steps,
/// checks the test accuracy for the first step that reaches `target` (%).
template <class Model>
struct Curves {
    Run* run;
    Model* model;
    const scaltra::data::LabelledSet<S>* test;
    Index eval_every;
    double target;

    template <class Opt>
    void on_step(const Opt& opt, const scaltra::Progress<S>& p, const Eigen::Ref<const Vec<S>>& w) {
        run->step_losses.push_back(p.loss);
        if constexpr (requires { opt.for_each_learned([](std::string_view, double) {}); }) {
            auto& values = run->learned.emplace_back();
            opt.for_each_learned([&](std::string_view name, double value) {
                if (run->learned.size() == 1)
                    run->learned_names.emplace_back(name);
                values.push_back(value);
            });
        }
        if (eval_every > 0 && run->steps_to_target < 0 && p.iteration % eval_every == 0
            && 100 * model->evaluate(w, test->inputs, test->labels).accuracy >= target)
            run->steps_to_target = p.iteration;
    }
};

/// fit, with the callbacks the settings ask for, and the checkpoint resumed from
/// and saved to when there is one.
template <class Opt, class Model>
Run train(const std::string& name, double lr, Opt opt, const Settings& settings, Model& model,
          Vec<S> w, const scaltra::data::LabelledSet<S>& train_set,
          const scaltra::data::LabelledSet<S>* validation_set,
          const scaltra::data::LabelledSet<S>& test_set) {
    Run run{name, lr, {}, {}, -1, {}, {}};
    scaltra::FitOptions<S> options{.epochs = settings.epochs,
                                   .batch_size = settings.batch,
                                   .seed = settings.seed,
                                   .validation = validation_set,
                                   .test = &test_set};
    const std::filesystem::path checkpoint =
        settings.checkpoint.empty() ? std::filesystem::path()
                                    : std::filesystem::path(settings.checkpoint) / (name + ".ckpt");
    if (!checkpoint.empty()) {
        try {
#ifdef SCALTRA_EXAMPLE_MPI
            options.initial_epoch = settings.mpi
                                        ? scaltra::dist::load_checkpoint(checkpoint, opt, w).epoch
                                        : scaltra::load_checkpoint(checkpoint, opt, w).epoch;
#else
            options.initial_epoch = scaltra::load_checkpoint(checkpoint, opt, w).epoch;
#endif
            if (settings.lead)
                std::fprintf(stderr, "%s: resuming from %s after epoch %lld\n", name.c_str(),
                             checkpoint.c_str(), static_cast<long long>(options.initial_epoch));
        } catch (const scaltra::MissingData&) {
            // no checkpoint yet: from the start
        }
        options.initial_epoch = std::min(options.initial_epoch, options.epochs);
    }
    if (settings.lead)
        std::fprintf(stderr, "%s (lr %g)\n", name.c_str(), lr);
    Curves<Model> steps{&run, &model, &test_set, settings.eval_every, settings.target};
    std::ostream& progress = settings.lead ? std::cerr : nowhere();
    auto run_fit = [&](auto&&... extra) {
        if (settings.csv.empty() || !settings.lead)
            return scaltra::fit(model, opt, w, train_set, options, scaltra::ProgressBar(progress),
                                steps, extra...);
        const std::filesystem::path dir(settings.csv);
        return scaltra::fit(model, opt, w, train_set, options, scaltra::ProgressBar(progress),
                            steps, extra...,
                            scaltra::CsvLogger((dir / (name + "_steps.csv")).string()),
                            scaltra::EpochCsvLogger((dir / (name + "_epochs.csv")).string()));
    };
#ifdef SCALTRA_EXAMPLE_MPI
    if (settings.mpi) {
        const scaltra::dist::StateAgreement agree(settings.check_every);
        run.result = checkpoint.empty() ? run_fit(agree)
                                        : run_fit(agree, scaltra::dist::Checkpoint(checkpoint));
        return run;
    }
#endif
    run.result = checkpoint.empty() ? run_fit() : run_fit(scaltra::Checkpoint(checkpoint));
    return run;
}

template <class Model>
Run train_named(const std::string& name, double lr, const Settings& settings, Model& model,
                const Vec<S>& initial, const scaltra::data::LabelledSet<S>& train_set,
                const scaltra::data::LabelledSet<S>* validation_set,
                const scaltra::data::LabelledSet<S>& test_set) {
    const auto& layout = model.layout();
    const auto rate = static_cast<S>(lr);
    auto go = [&](auto opt) {
        return train(name, lr, opt, settings, model, initial, train_set, validation_set,
                     test_set);
    };
    if (name == "sgd")
        return go(scaltra::Sgd<S>(layout, {.lr = rate}));
    if (name == "momentum")
        return go(scaltra::Sgd<S>(layout, {.lr = rate, .momentum = 0.9f}));
    if (name == "adam")
        return go(scaltra::Adam<S>(layout, {.lr = rate}));
    if (name == "adamw")
        return go(scaltra::AdamW<S>(layout, {.lr = rate}));
    if (name == "rmsprop")
        return go(scaltra::RmsProp<S>(layout, {.lr = rate}));
    if (name == "scaltra" || name == "scaltra-matrix") {
        scaltra::ScaltraOptions<S> options;  // the learning rate is α₀ (τ₀ = γ₀/α₀)
        options.alpha0 = rate;
        if (name == "scaltra-matrix")
            options.curvature = scaltra::Curvature::per_matrix;
        if (settings.meta_lr)
            options.meta.lr = static_cast<S>(*settings.meta_lr);
        if (settings.beta)
            options.beta = static_cast<S>(*settings.beta);
        if (settings.epsilon)
            options.epsilon = static_cast<S>(*settings.epsilon);
        if (settings.gamma_rule)
            options.gamma_rule = *settings.gamma_rule;
        if (settings.rank)
            options.rank = *settings.rank;
        if (settings.b_scale)
            options.b_scale = static_cast<S>(*settings.b_scale);
        return go(scaltra::Scaltra<S>(layout, options));
    }
    if (name == "lodo") {
        scaltra::LodoOptions<S> options{.alpha0 = rate};
        if (settings.meta_lr)
            options.meta.lr = static_cast<S>(*settings.meta_lr);
        if (settings.beta)
            options.beta = static_cast<S>(*settings.beta);
        if (settings.permutations)
            options.permutations = *settings.permutations;
        if (settings.compact_lodo)
            return go(scaltra::CompactLodo<S>(layout, options));
        return go(scaltra::Lodo<S>(layout, options));
    }
    // APO: the library's defaults but for what the flags set.
    const S momentum = static_cast<S>(settings.momentum.value_or(0.9));
    auto apo = [&](auto options) {
        if (settings.meta_lr)
            options.meta.lr = static_cast<S>(*settings.meta_lr);
        if (settings.interval)
            options.interval = *settings.interval;
        if (settings.lambda_fsd)
            options.lambda_fsd = static_cast<S>(*settings.lambda_fsd);
        if (settings.lambda_wsd)
            options.lambda_wsd = static_cast<S>(*settings.lambda_wsd);
        return options;
    };
    if (name == "apo")
        return go(scaltra::Apo<S>(layout, apo(scaltra::ApoOptions<S, scaltra::SgdOptions<S>>{
                                              .base = {.lr = rate, .momentum = momentum}})));
    if (name == "apo-adam")
        return go(scaltra::Apo<S, scaltra::Adam<S>>(
            layout, apo(scaltra::ApoOptions<S, scaltra::AdamOptions<S>>{.base = {.lr = rate}})));
    if (name == "apo-p") {
        scaltra::ApoPOptions<S> options{.lr = rate, .momentum = momentum};
        if (settings.max_factor)
            options.max_factor = *settings.max_factor;
        return go(scaltra::ApoP<S>(layout, apo(options)));
    }
    return go(scaltra::AdaGrad<S>(layout, {.lr = rate}));
}

/// Seconds per epoch and steps per second of the epochs run (evaluation excluded).
struct Throughput {
    double seconds_per_epoch, steps_per_second;
};
Throughput throughput(const scaltra::FitResult& r) {
    if (r.history.empty())
        return {NAN, NAN};
    double seconds = 0;
    for (const auto& e : r.history)
        seconds += e.train_seconds;
    const auto& last = r.history.back();
    const auto epochs = static_cast<double>(r.history.size());
    const double steps = static_cast<double>(last.iteration / last.epoch) * epochs;
    return {seconds / epochs, steps / seconds};
}

void print_table(const std::vector<Run>& runs, const Settings& settings) {
    char to_target[24] = "";
    if (settings.eval_every > 0)
        std::snprintf(to_target, sizeof to_target, "to %g%%", settings.target);
    std::printf("\n%-14s %8s %6s %10s %9s %8s %11s %9s %9s %9s\n", "optimizer", "lr", "epochs",
                "wall (s)", "s/epoch", "steps/s", "train loss", "val acc", "test acc", to_target);
    for (const auto& run : runs) {
        const auto& h = run.result.history;
        const double last_loss = h.empty() ? NAN : h.back().train_loss;
        const double accuracy = h.empty() ? NAN : h.back().metrics.test_accuracy;
        const double validation = h.empty() ? NAN : h.back().metrics.validation_accuracy;
        const Throughput speed = throughput(run.result);
        char validation_text[16] = "-";
        if (!std::isnan(validation))
            std::snprintf(validation_text, sizeof validation_text, "%.2f%%", 100 * validation);
        char steps_text[24] = "";
        if (settings.eval_every > 0) {
            if (run.steps_to_target >= 0)
                std::snprintf(steps_text, sizeof steps_text, "%lld",
                              static_cast<long long>(run.steps_to_target));
            else
                std::snprintf(steps_text, sizeof steps_text, "-");
        }
        std::printf("%-14s %8.0e %6zu %10.2f %9.3f %8.0f %11.4f %9s %8.2f%% %9s\n",
                    run.name.c_str(), run.lr, h.size(), run.result.elapsed_seconds,
                    speed.seconds_per_epoch, speed.steps_per_second, last_loss, validation_text,
                    100 * accuracy, steps_text);
    }
}

/// Training loss (mean over windows of `window` steps) and test accuracy per
/// epoch, one curve per optimizer, as a PNG through gnuplot.
bool plot(const std::vector<Run>& runs, const std::string& path, Index steps_per_epoch) {
    FILE* gp = popen("gnuplot 2>&1", "w");
    if (gp == nullptr)
        return false;
    const Index window = std::max<Index>(1, steps_per_epoch / 10);
    for (std::size_t r = 0; r < runs.size(); ++r) {
        std::fprintf(gp, "$loss%zu << EOD\n", r);
        const auto& l = runs[r].step_losses;
        for (std::size_t i = 0; i + static_cast<std::size_t>(window) <= l.size();
             i += static_cast<std::size_t>(window)) {
            double sum = 0;
            for (std::size_t j = i; j < i + static_cast<std::size_t>(window); ++j)
                sum += static_cast<double>(l[j]);
            std::fprintf(gp, "%g %g\n",
                         static_cast<double>(i + static_cast<std::size_t>(window))
                             / static_cast<double>(steps_per_epoch),
                         sum / static_cast<double>(window));
        }
        std::fprintf(gp, "EOD\n$acc%zu << EOD\n", r);
        for (const auto& e : runs[r].result.history)
            std::fprintf(gp, "%lld %g\n", static_cast<long long>(e.epoch),
                         100 * e.metrics.test_accuracy);
        std::fprintf(gp, "EOD\n");
    }
    std::fprintf(gp,
                 "set terminal pngcairo size 1200,480 font ',10'\nset output '%s'\n"
                 "set multiplot layout 1,2\nset grid\nset key top right\n"
                 "set xlabel 'epoch'\nset ylabel 'training loss (mean of %lld steps)'\n"
                 "set logscale y\nset autoscale yfix\n"
                 "set ytics (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10)\nplot ",
                 path.c_str(), static_cast<long long>(window));
    for (std::size_t r = 0; r < runs.size(); ++r)
        std::fprintf(gp, "%s$loss%zu with lines lw 1.5 title '%s'", r ? ", " : "", r,
                     runs[r].name.c_str());
    std::fprintf(gp,
                 "\nunset logscale y\nset ytics auto\nset key bottom right\n"
                 "set ylabel 'test accuracy (%%)'\n"
                 "set xrange [0.5:%lld.5]\nset xtics 1\nplot ",
                 static_cast<long long>(runs.empty() || runs[0].result.history.empty()
                                            ? 1
                                            : runs[0].result.history.back().epoch));
    for (std::size_t r = 0; r < runs.size(); ++r)
        std::fprintf(gp, "%s$acc%zu with linespoints lw 1.5 pt 7 ps 0.6 title '%s'", r ? ", " : "",
                     r, runs[r].name.c_str());
    std::fprintf(gp, "\nunset multiplot\n");
    const int status = pclose(gp);
    return status == 0;
}

/// The learned learning rates of every run that has them (APO's `lr`, APO-P's
/// `lr:<block>`), against the step, on a log scale, as a PNG through gnuplot.
bool plot_learned(const std::vector<Run>& runs, const std::string& path) {
    FILE* gp = popen("gnuplot 2>&1", "w");
    if (gp == nullptr)
        return false;
    std::string curves;
    int block = 0;
    for (const auto& run : runs)
        for (std::size_t c = 0; c < run.learned_names.size(); ++c) {
            if (!run.learned_names[c].starts_with("lr"))
                continue;  // SCALTRA's τ and ‖b‖ are not learning rates
            ++block;
            std::fprintf(gp, "$lr%d << EOD\n", block);
            for (std::size_t t = 0; t < run.learned.size(); ++t)
                std::fprintf(gp, "%zu %g\n", t + 1, run.learned[t][c]);
            std::fprintf(gp, "EOD\n");
            curves += (curves.empty() ? "" : ", ") + std::string("$lr") + std::to_string(block)
                      + " with lines lw 1.5 noenhanced title '" + run.name + " "
                      + run.learned_names[c] + "'";
        }
    std::fprintf(gp,
                 "set terminal pngcairo size 900,480 font ',10'\nset output '%s'\nset grid\n"
                 "set key outside right\nset xlabel 'step'\nset ylabel 'learned learning rate'\n"
                 "set logscale y\nplot %s\n",
                 path.c_str(), curves.empty() ? "NaN notitle" : curves.c_str());
    return pclose(gp) == 0;
}

/// Which library runs the matrix products (and, for OpenBLAS, which kernels it
/// chose: the CPU's, or OPENBLAS_CORETYPE's).
std::string products() {
#ifdef SCALTRA_HAVE_OPENBLAS
    return std::string("products by OpenBLAS (") + openblas_get_corename() + " kernels)";
#else
    return "products by Eigen";
#endif
}

/// Whether `name` is in the comma-separated `list` (or the list is "all").
bool chosen(const std::string& list, const std::string& name) {
    return list == "all" || ("," + list + ",").find("," + name + ",") != std::string::npos;
}

[[noreturn]] void usage(const char* problem) {
    if (problem)
        std::fprintf(stderr, "fashion_mnist: %s\n", problem);
    std::fprintf(stderr,
                 "usage: fashion_mnist [--optimizer NAME[,NAME...]|all] [--epochs N] [--batch B]\n"
                 "                     [--lr LR] [--threads T] [--seed S] [--limit N]\n"
                 "                     [--validation N]\n"
                 "                     [--eval-every K] [--target PERCENT]\n"
                 "                     [--meta-lr LR] [--beta B] [--gamma-rule sca|geometric]\n"
                 "                     [--epsilon E] [--rank R] [--b-scale S]\n"
                 "                     [--permutations random|butterfly]\n"
                 "                     [--meta-state float|bfloat16]\n"
                 "                     [--interval K] [--lambda-fsd L] [--lambda-wsd L]\n"
                 "                     [--momentum M] [--max-factor N]\n"
                 "                     [--data DIR] [--csv DIR] [--plot FILE.png]\n"
                 "                     [--plot-lr FILE.png] [--checkpoint DIR]\n"
                 "                     [--mpi] [--check-every N]\n"
                 "optimizers:");
    for (const auto& e : kOptimizers)
        std::fprintf(stderr, " %s", e.name);
    std::fprintf(stderr, "\n");
    std::exit(2);
}

double parse_number(const char* text, const char* flag, bool integer, bool zero_allowed = false) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v > 0 || (zero_allowed && v == 0))
        || (integer && v != std::floor(v)))
        usage((std::string(flag) + " needs a " + (zero_allowed ? "non-negative " : "positive ")
               + (integer ? "integer" : "number") + ", got '" + text + "'")
                  .c_str());
    return v;
}

Settings parse(int argc, char** argv) {
    Settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--mpi") {  // the one flag without a value
            s.mpi = true;
            continue;
        }
        if (i + 1 >= argc)
            usage(("missing a value after " + flag).c_str());
        const char* value = argv[++i];
        if (flag == "--optimizer")
            s.optimizer = value;
        else if (flag == "--epochs")
            s.epochs = static_cast<std::int64_t>(parse_number(value, "--epochs", true));
        else if (flag == "--batch")
            s.batch = static_cast<Index>(parse_number(value, "--batch", true));
        else if (flag == "--lr")
            s.lr = parse_number(value, "--lr", false);
        else if (flag == "--threads")
            s.threads = static_cast<int>(parse_number(value, "--threads", true));
        else if (flag == "--seed")
            s.seed = static_cast<std::uint64_t>(parse_number(value, "--seed", true));
        else if (flag == "--limit")
            s.limit = static_cast<Index>(parse_number(value, "--limit", true));
        else if (flag == "--validation")
            s.validation = static_cast<Index>(parse_number(value, "--validation", true));
        else if (flag == "--eval-every")
            s.eval_every = static_cast<Index>(parse_number(value, "--eval-every", true));
        else if (flag == "--target")
            s.target = parse_number(value, "--target", false);
        else if (flag == "--meta-lr")
            s.meta_lr = parse_number(value, "--meta-lr", false);
        else if (flag == "--rank")
            s.rank = static_cast<Index>(parse_number(value, "--rank", true));
        else if (flag == "--b-scale")
            s.b_scale = parse_number(value, "--b-scale", false, true);
        else if (flag == "--beta")
            s.beta = parse_number(value, "--beta", false, true);
        else if (flag == "--epsilon")
            s.epsilon = parse_number(value, "--epsilon", false, true);
        else if (flag == "--interval")
            s.interval = static_cast<Index>(parse_number(value, "--interval", true));
        else if (flag == "--lambda-fsd")
            s.lambda_fsd = parse_number(value, "--lambda-fsd", false, true);
        else if (flag == "--lambda-wsd")
            s.lambda_wsd = parse_number(value, "--lambda-wsd", false, true);
        else if (flag == "--max-factor")
            s.max_factor = static_cast<Index>(parse_number(value, "--max-factor", true, true));
        else if (flag == "--momentum")
            s.momentum = parse_number(value, "--momentum", false, true);
        else if (flag == "--gamma-rule") {
            const std::string rule = value;
            if (rule != "sca" && rule != "geometric")
                usage(("--gamma-rule is sca or geometric, got '" + rule + "'").c_str());
            s.gamma_rule = rule == "sca" ? scaltra::GammaRule::sca : scaltra::GammaRule::geometric;
        } else if (flag == "--permutations") {
            const std::string kind = value;
            if (kind != "random" && kind != "butterfly")
                usage(("--permutations is random or butterfly, got '" + kind + "'").c_str());
            s.permutations = kind == "random" ? scaltra::LodoPermutations::random
                                              : scaltra::LodoPermutations::butterfly;
        } else if (flag == "--meta-state") {
            const std::string kind = value;
            if (kind != "float" && kind != "bfloat16")
                usage(("--meta-state is float or bfloat16, got '" + kind + "'").c_str());
            s.compact_lodo = kind == "bfloat16";
        } else if (flag == "--data")
            s.data = value;
        else if (flag == "--csv")
            s.csv = value;
        else if (flag == "--plot")
            s.plot = value;
        else if (flag == "--plot-lr")
            s.plot_lr = value;
        else if (flag == "--checkpoint")
            s.checkpoint = value;
        else if (flag == "--check-every")
            s.check_every = static_cast<Index>(parse_number(value, "--check-every", true));
        else
            usage(("unknown option " + flag).c_str());
    }
    if (s.optimizer != "all")
        for (std::size_t at = 0; at <= s.optimizer.size();) {
            const std::size_t end = std::min(s.optimizer.find(',', at), s.optimizer.size());
            const std::string one = s.optimizer.substr(at, end - at);
            bool known = false;
            for (const auto& e : kOptimizers)
                known |= one == e.name;
            if (!known)
                usage(("unknown optimizer '" + one + "'").c_str());
            at = end + 1;
        }
    return s;
}

#ifdef SCALTRA_EXAMPLE_MPI
/// MPI_Init and MPI_Finalize around main, when --mpi asks for them.
struct MpiSession {
    bool active;
    MpiSession(bool wanted, int& argc, char**& argv) : active(wanted) {
        if (active)
            MPI_Init(&argc, &argv);
    }
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;
    ~MpiSession() {
        if (active)
            MPI_Finalize();
    }
};
#endif

/// Trains every chosen optimizer on `model` (an Mlp, or under --mpi its data-parallel wrapper).
template <class Model>
std::vector<Run> train_all(const Settings& settings, Model& model, const Vec<S>& initial,
                           const scaltra::data::FashionMnist<S>& fm,
                           const scaltra::data::LabelledSet<S>* validation) {
    std::vector<Run> runs;
    for (const auto& e : kOptimizers)
        if (chosen(settings.optimizer, e.name))
            runs.push_back(train_named(e.name, settings.lr.value_or(e.lr), settings, model, initial,
                                       fm.train, validation, fm.test));
    return runs;
}

}  // namespace

int main(int argc, char** argv) {
    Settings settings = parse(argc, argv);
#ifdef SCALTRA_EXAMPLE_MPI
    const MpiSession mpi(settings.mpi, argc, argv);
    int ranks = 1;
    if (settings.mpi) {
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &ranks);
        settings.lead = rank == 0;
    }
#else
    if (settings.mpi)
        usage("--mpi needs a build with MPI (apt-get install libopenmpi-dev openmpi-bin, then "
              "configure again)");
    const int ranks = 1;
#endif
    scaltra::set_threads(settings.threads);
    scaltra::data::FashionMnist<S> fm;
    try {
        fm = scaltra::data::load_fashion_mnist<S>(settings.data);
    } catch (const scaltra::Error& e) {
        std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
        return 1;
    }
    if (settings.limit > 0 && settings.limit < fm.train.size()) {
        fm.train.inputs.conservativeResize(Eigen::NoChange, settings.limit);
        fm.train.labels.resize(static_cast<std::size_t>(settings.limit));
    }
    std::optional<scaltra::data::LabelledSet<S>> validation;
    if (settings.validation > 0) {
        try {
            auto [rest, held_out] =
                scaltra::data::split(fm.train, settings.validation, settings.seed);
            fm.train = std::move(rest);
            validation = std::move(held_out);
        } catch (const scaltra::Error& e) {
            usage(e.what());
        }
    }
    if (settings.lead) {
        for (const std::string& dir : {settings.csv, settings.checkpoint})
            if (!dir.empty())
                std::filesystem::create_directories(dir);
        std::fprintf(stderr,
                     "Fashion-MNIST: %lld training, %lld test images; %d rank(s) of %d thread(s); "
                     "%s\n",
                     static_cast<long long>(fm.train.size()),
                     static_cast<long long>(fm.test.size()), ranks, settings.threads,
                     products().c_str());
    }

    scaltra::nn::Mlp<S> model({784, 256, 128, 10}, scaltra::nn::Relu{}, settings.seed);
    const Vec<S> initial = model.init();  // the same initial weights for every optimizer
    std::vector<Run> runs;
    try {
#ifdef SCALTRA_EXAMPLE_MPI
        if (settings.mpi) {
            scaltra::dist::DataParallelClassifier<S, scaltra::nn::Mlp<S>> data_parallel(model);
            runs = train_all(settings, data_parallel, initial, fm,
                             validation ? &*validation : nullptr);
        } else
#endif
            runs = train_all(settings, model, initial, fm, validation ? &*validation : nullptr);
    } catch (const scaltra::Error& e) {
        std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
#ifdef SCALTRA_EXAMPLE_MPI
        if (settings.mpi)
            MPI_Abort(MPI_COMM_WORLD, 1);  // a rank that cannot go on: the others would wait
#endif
        return 1;
    }
    if (!settings.lead)
        return 0;
    print_table(runs, settings);
    if (!settings.plot.empty()) {
        const Index steps_per_epoch = (fm.train.size() + settings.batch - 1) / settings.batch;
        if (!plot(runs, settings.plot, steps_per_epoch)) {
            examples::report_plot_failure("fashion_mnist", settings.plot);
            return 1;
        }
        std::printf("plot: %s\n", settings.plot.c_str());
    }
    if (!settings.plot_lr.empty()) {
        if (!plot_learned(runs, settings.plot_lr)) {
            examples::report_plot_failure("fashion_mnist", settings.plot_lr);
            return 1;
        }
        std::printf("plot: %s\n", settings.plot_lr.c_str());
    }
    return 0;
}
