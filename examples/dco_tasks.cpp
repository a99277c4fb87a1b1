// The DCO paper's three experiments (research-apo-dco.md §4.4): DCOG, DCOGD and
// DCOM, meta-trained on one set of tasks at T = 1 and at T = --inner-steps,
// against SGD, Adam and RMSProp with learning rates tuned on the same
// meta-training tasks, all evaluated on new tasks. Prints the mean ± std over the
// evaluation tasks of the validation loss, averaged over the evaluation steps
// (the comparison's metric) and at the last step; writes the mean and std curves
// as CSV and plots them (gnuplot). --task theorem1 checks Theorem 1 instead.
//
//   dco_tasks [--task least_squares|beverton_holt|smooth_interpolation|theorem1]
//             [--meta-tasks N] [--eval-tasks N] [--steps K] [--epochs M]
//             [--inner-steps T] [--normalize on|off] [--init tuned|paper]
//             [--momentum B] [--activation tanh|relu|sigmoid] [--noise S]
//             [--x-range A,B] [--rows R] [--cols C] [--seed N] [--csv FILE]
//             [--plot FILE.png] [--progress] [--meta-csv PREFIX]
//
// --progress draws meta_train's progress bar over the meta-epochs (stderr);
// --meta-csv writes each meta-training's meta-loss per meta-step to
// PREFIX<optimizer>.csv (CsvLogger).
//
// Where the paper is silent (each a flag): the networks use tanh; 100
// meta-training tasks for every experiment; 100 evaluation tasks (10 for smooth
// interpolation, as the paper's figure); 30 evaluation steps; every task of an
// experiment starts from the same point (θ = 0 for least squares, the network's
// initialisation from seed 1 otherwise); Beverton–Holt's noise has std 0.1 and
// the interpolation's x is drawn from [−5, 5]. The baselines' learning rates are
// the best of the grid 10^{−5}, 10^{−4.5}, …, 10 by the comparison's metric on
// the meta-training tasks (a rate with a diverged run is not chosen). DCO starts
// (--init tuned) from the rate an untrained DCOG tunes to by the same grid (it
// is GD on the normalised or raw gradient), or (--init paper) from η₀ = 1, the
// paper's B₀ = I.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <scaltra/scaltra.hpp>

#include <Eigen/Eigenvalues>

#include "example_cli.hpp"

namespace {

using S = double;
using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;

constexpr const char* kProgram = "dco_tasks";

struct Settings {
    std::string task = "least_squares";
    int meta_tasks = 100, eval_tasks = -1, steps = 30, epochs = 20, inner_steps = 5;
    bool normalize = true, tuned_init = true;
    double momentum = 0.9, noise = 0.1, x_min = -5, x_max = 5;
    scaltra::nn::Activation activation = scaltra::nn::Activation::tanh;
    Index rows = 40, cols = 10;
    std::uint64_t seed = 1;
    std::string csv, png, meta_csv;
    bool progress = false;
};

/// meta_train's callbacks as asked for: a progress bar and a CSV log, each optional.
struct MetaLog {
    std::optional<scaltra::ProgressBar> bar;
    std::optional<scaltra::CsvLogger> csv;

    template <class Opt>
    void on_begin(const Opt& o, const scaltra::Progress<double>& p,
                  const Eigen::Ref<const scaltra::Vec<double>>& x) {
        if (bar)
            bar->on_begin(o, p, x);
        if (csv)
            csv->on_begin(o, p, x);
    }
    template <class Opt>
    void on_step(const Opt& o, const scaltra::Progress<double>& p,
                 const Eigen::Ref<const scaltra::Vec<double>>& x) {
        if (bar)
            bar->on_step(o, p, x);
        if (csv)
            csv->on_step(o, p, x);
    }
    template <class Opt>
    void on_end(const Opt& o, const scaltra::Progress<double>& p,
                const Eigen::Ref<const scaltra::Vec<double>>& x) {
        if (bar)
            bar->on_end(o, p, x);
        if (csv)
            csv->on_end(o, p, x);
    }
};

/// The validation loss at θ₀ … θ_K of K steps of opt on a task (NaN from a
/// non-finite step on).
template <class Opt, class Task>
std::vector<double> run(Opt& opt, Task& task, int steps) {
    std::vector<double> curve(static_cast<std::size_t>(steps) + 1,
                              std::numeric_limits<double>::quiet_NaN());
    Vec<S> x = task.initial_point(), g(x.size());
    auto train = [&](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> grad) {
        return task.train_loss(at, grad);
    };
    try {
        curve[0] = task.validation_loss(x, g);
        for (int t = 1; t <= steps; ++t) {
            opt.step(x, train);
            curve[static_cast<std::size_t>(t)] = task.validation_loss(x, g);
            if (!std::isfinite(curve[static_cast<std::size_t>(t)]))
                break;
        }
    } catch (const scaltra::NonFinite&) {
        // diverged: the rest stays NaN
    }
    return curve;
}

/// The curves of one optimizer over tasks: make() builds it fresh for each task.
template <class Tasks, class Make>
std::vector<std::vector<double>> curves(Tasks& tasks, int steps, Make&& make) {
    std::vector<std::vector<double>> out;
    for (std::size_t i = 0; i < tasks.size(); ++i) {
        auto opt = make();
        out.push_back(run(opt, tasks[i], steps));
    }
    return out;
}

bool finite(const std::vector<double>& c) {
    return std::all_of(c.begin(), c.end(), [](double v) { return std::isfinite(v); });
}

/// The comparison's metric of one run: its validation loss averaged over steps 1 … K.
double score(const std::vector<double>& c) {
    double sum = 0;
    for (std::size_t t = 1; t < c.size(); ++t)
        sum += c[t];
    return sum / static_cast<double>(c.size() - 1);
}

/// The mean score over tasks, infinite when a run diverged.
double mean_score(const std::vector<std::vector<double>>& runs) {
    double sum = 0;
    for (const auto& c : runs) {
        if (!finite(c))
            return std::numeric_limits<double>::infinity();
        sum += score(c);
    }
    return sum / static_cast<double>(runs.size());
}

/// The best learning rate of the grid for make(lr), on the meta-training tasks.
template <class Tasks, class Make>
double tune(Tasks& tasks, int steps, Make&& make) {
    double best = std::numeric_limits<double>::infinity(), best_lr = 0;
    for (int k = -10; k <= 2; ++k) {
        const double lr = std::pow(10.0, k / 2.0);
        const double s = mean_score(curves(tasks, steps, [&] { return make(lr); }));
        if (s < best) {
            best = s;
            best_lr = lr;
        }
    }
    if (!(best_lr > 0)) {
        std::fprintf(stderr, "%s: every learning rate of the grid diverged\n", kProgram);
        std::exit(1);
    }
    return best_lr;
}

enum class Kind { baseline, start, learned };

struct Result {
    Kind kind;
    std::string name;
    double lr;                              // the baseline's tuned rate, or DCO's η₀
    std::vector<std::vector<double>> runs;  // per evaluation task
    double meta_seconds = 0;
};

bool plot(const std::vector<Result>& results, int steps, const std::string& title,
          const std::string& path) {
    FILE* gp = popen("gnuplot 2>&1", "w");
    if (gp == nullptr)
        return false;
    for (std::size_t o = 0; o < results.size(); ++o) {
        std::fprintf(gp, "$c%zu << EOD\n", o);
        for (int t = 0; t <= steps; ++t) {
            std::vector<double> at;
            for (const auto& c : results[o].runs)
                if (finite(c))
                    at.push_back(c[static_cast<std::size_t>(t)]);
            if (at.empty())
                continue;
            // The band is floored at mean/10 on the log axis.
            const auto s = examples::summarize(at);
            std::fprintf(gp, "%d %g %g %g\n", t, s.mean, std::max(s.mean - s.std, s.mean / 10),
                         s.mean + s.std);
        }
        std::fprintf(gp, "EOD\n");
    }
    std::fprintf(gp,
                 "set terminal pngcairo size 960,600 font ',10'\nset output '%s'\n"
                 "set logscale y\nset xrange [0:%d]\nset format y '%%.0e'\nset grid\n"
                 "set key outside right\nset title '%s'\nset xlabel 'step on a new task'\n"
                 "set ylabel 'validation loss (mean ± std over tasks; band floored at mean/10)'\n"
                 "set style fill transparent solid 0.12 noborder\nplot ",
                 path.c_str(), steps, title.c_str());
    for (std::size_t o = 0; o < results.size(); ++o)
        std::fprintf(gp,
                     "%s$c%zu using 1:3:4 with filledcurves lc %zu notitle, $c%zu using 1:2 with "
                     "lines lw 2 lc %zu dt %d title '%s'",
                     o ? ", " : "", o, o + 1, o, o + 1, results[o].kind == Kind::learned ? 1 : 2,
                     results[o].name.c_str());
    std::fprintf(gp, "\n");
    return pclose(gp) == 0;
}

bool write_csv(const std::vector<Result>& results, int steps, const std::string& path) {
    std::FILE* out = examples::open_output(kProgram, path);
    if (out == nullptr)
        return false;
    std::fprintf(out, "step");
    for (const auto& r : results)
        std::fprintf(out, ",%s_mean,%s_std", r.name.c_str(), r.name.c_str());
    std::fprintf(out, "\n");
    for (int t = 0; t <= steps; ++t) {
        std::fprintf(out, "%d", t);
        for (const auto& r : results) {
            std::vector<double> at;
            for (const auto& c : r.runs)
                if (finite(c))
                    at.push_back(c[static_cast<std::size_t>(t)]);
            const auto s = at.empty() ? examples::Stat{NAN, NAN} : examples::summarize(at);
            std::fprintf(out, ",%.9g,%.9g", s.mean, s.std);
        }
        std::fprintf(out, "\n");
    }
    std::fclose(out);
    return true;
}

void print_row(const Result& r, int steps) {
    std::vector<double> scores, finals;
    for (const auto& c : r.runs)
        if (finite(c)) {
            scores.push_back(score(c));
            finals.push_back(c.back());
        }
    const int diverged = static_cast<int>(r.runs.size() - scores.size());
    if (scores.empty()) {
        std::printf("%-10s %9.3g %25s %25s %9d\n", r.name.c_str(), r.lr, "-", "-", diverged);
        return;
    }
    const auto a = examples::summarize(scores), b = examples::summarize(finals);
    std::printf("%-10s %9.3g    %10.4e ± %9.3e    %10.4e ± %9.3e %9d", r.name.c_str(), r.lr,
                a.mean, a.std, b.mean, b.std, diverged);
    if (r.meta_seconds > 0)
        std::printf(" %12.3f", r.meta_seconds);
    std::printf("\n");
    (void)steps;
}

/// The comparison on meta-training tasks `train` and evaluation tasks `eval`.
template <class Tasks>
int compare(Tasks& train, Tasks& eval, const scaltra::Layout& layout, const Settings& s,
            const std::string& title) {
    const int K = s.steps;
    const bool normalize = s.normalize;
    std::vector<Result> results;
    auto baseline = [&](const char* name, auto make) {
        const double lr = tune(train, K, make);
        results.push_back({Kind::baseline, name, lr, curves(eval, K, [&] { return make(lr); })});
    };
    baseline("sgd", [&](double lr) { return scaltra::Sgd<S>(layout, {.lr = lr}); });
    baseline("adam", [&](double lr) { return scaltra::Adam<S>(layout, {.lr = lr}); });
    baseline("rmsprop", [&](double lr) { return scaltra::RmsProp<S>(layout, {.lr = lr}); });
    auto untrained = [&](double lr) {
        return scaltra::Dcog<S>(layout, {.lr = lr, .normalize_gradient = normalize});
    };
    const double eta0 = s.tuned_init ? tune(train, K, untrained) : 1.0;
    // DCO's start, before meta-training: GD at η₀ (on the normalised gradient).
    results.push_back({Kind::start, "dco-start", eta0, curves(eval, K, [&] {
                           return untrained(eta0);
                       })});
    auto learned = [&](const std::string& name, auto opt, int T) {
        MetaLog log;
        if (s.progress)
            log.bar.emplace(std::cerr);
        if (!s.meta_csv.empty())
            log.csv.emplace(s.meta_csv + name + "-T" + std::to_string(T) + ".csv");
        const auto r =
            scaltra::meta_train(opt, train, {.epochs = s.epochs, .inner_steps = T}, log);
        results.push_back({Kind::learned, name + "-T" + std::to_string(T), eta0, curves(eval, K, [&] {
                               auto copy = opt;
                               copy.restart();
                               return copy;
                           }),
                           r.elapsed_seconds});
    };
    std::vector<int> horizons{1};
    if (s.inner_steps > 1)
        horizons.push_back(s.inner_steps);
    for (int T : horizons) {
        learned("dcog", scaltra::Dcog<S>(layout, {.lr = eta0, .normalize_gradient = normalize}),
                T);
        learned("dcogd", scaltra::Dcogd<S>(layout, {.lr = eta0, .normalize_gradient = normalize}),
                T);
        learned("dcom", scaltra::Dcom<S>(layout, {.lr = eta0,
                                                  .momentum = s.momentum,
                                                  .normalize_gradient = normalize}),
                T);
    }

    std::printf("%s\n%zu meta-training tasks, %zu evaluation tasks, %d steps; DCO: %d meta-epochs, "
                "gradients %s, eta0 %g (%s)\n",
                title.c_str(), train.size(), eval.size(), K, s.epochs,
                normalize ? "normalised" : "raw", eta0, s.tuned_init ? "tuned" : "paper");
    std::printf("%-10s %9s %28s %28s %9s %12s\n", "optimizer", "lr", "loss over steps 1-K",
                "loss at step K", "diverged", "meta-train s");
    for (const auto& r : results)
        print_row(r, K);
    // The paper's claim: the best DCO against the best tuned baseline, by the metric.
    double best_base = std::numeric_limits<double>::infinity(),
           best_dco = std::numeric_limits<double>::infinity();
    std::string base_name, dco_name;
    for (std::size_t o = 0; o < results.size(); ++o) {
        const double m = mean_score(results[o].runs);
        if (results[o].kind == Kind::start)
            continue;
        const bool base = results[o].kind == Kind::baseline;
        double& best = base ? best_base : best_dco;
        if (m < best) {
            best = m;
            (base ? base_name : dco_name) = results[o].name;
        }
    }
    std::printf("best DCO (%s) / best baseline (%s), mean loss over steps 1-%d: %.4f\n",
                dco_name.c_str(), base_name.c_str(), K, best_dco / best_base);
    if (!s.csv.empty()) {
        if (!write_csv(results, K, s.csv))
            return 1;
        std::printf("csv: %s\n", s.csv.c_str());
    }
    if (!s.png.empty()) {
        if (!plot(results, K, title, s.png)) {
            examples::report_plot_failure(kProgram, s.png);
            return 1;
        }
        std::printf("plot: %s\n", s.png.c_str());
    }
    return 0;
}

/// Prints the meta-loss and B's distance to ½(XᵀX)⁻¹ at meta-epochs 1, 10, 100, …
struct TheoremTrace {
    Mat<S> target;
    template <class Opt>
    void on_epoch_end(const Opt& opt, const scaltra::Progress<S>& p,
                      const Eigen::Ref<const Vec<S>>&) const {
        const auto e = p.epoch;
        if (e != p.max_epochs && std::pow(10.0, std::round(std::log10(double(e)))) != double(e))
            return;
        std::printf("%10lld %14.6e %18.6e\n", static_cast<long long>(e),
                    static_cast<double>(p.epoch_loss),
                    (opt.matrix() - target).norm() / target.norm());
    }
};

/// Theorem 1: shifted least squares with one X, meta-GD on DCOGD's B at T = 1.
int theorem1(const Settings& s) {
    scaltra::Rng rng(s.seed);
    const Mat<S> X = Mat<S>::NullaryExpr(s.rows, s.cols, [&] { return rng.normal(); });
    const Vec<S> y = rng.normal_vector<S>(s.rows);
    std::vector<scaltra::data::LeastSquaresTask<S>> tasks, fresh;
    for (int i = 0; i < s.meta_tasks; ++i)
        tasks.push_back(scaltra::data::shifted_least_squares_task<S>(rng, X, y));
    for (int i = 0; i < (s.eval_tasks > 0 ? s.eval_tasks : 100); ++i)
        fresh.push_back(scaltra::data::shifted_least_squares_task<S>(rng, X, y));
    // The meta-loss is quadratic in B, Hessian (2/N)Σ gᵢgᵢᵀ ⊗ XᵀX: meta-GD at 1/λ_max.
    const Mat<S> XtX = X.transpose() * X;
    Mat<S> GGt = Mat<S>::Zero(s.cols, s.cols);
    Vec<S> g(s.cols);
    for (auto& t : tasks) {
        t.train_loss(t.start, g);
        GGt += g * g.transpose() / static_cast<S>(tasks.size());
    }
    const Vec<S> ev = Eigen::SelfAdjointEigenSolver<Mat<S>>(XtX).eigenvalues();
    const S lambda_max =
        2 * Eigen::SelfAdjointEigenSolver<Mat<S>>(GGt).eigenvalues().maxCoeff() * ev.maxCoeff();
    std::printf("Theorem 1: X %lldx%lld ~ N(0, 1), cond(XᵀX) = %.3e, %zu tasks, T = 1, raw "
                "gradients, meta-GD at 1/lambda_max = %.3e\n%10s %14s %18s\n",
                static_cast<long long>(s.rows), static_cast<long long>(s.cols),
                ev.maxCoeff() / ev.minCoeff(), tasks.size(), 1 / lambda_max, "meta-epoch",
                "meta-loss", "|B - B*| / |B*|");
    scaltra::Dcogd<S, scaltra::Sgd<S>> opt(
        s.cols, {.lr = 1e-3, .normalize_gradient = false, .meta = {.lr = 1 / lambda_max}});
    TheoremTrace trace{0.5 * XtX.inverse()};
    scaltra::meta_train(opt, tasks, {.epochs = s.epochs}, trace);
    std::vector<double> gaps;
    for (auto& t : fresh) {
        Vec<S> theta = t.start;
        opt.restart();
        opt.step(theta, t);
        gaps.push_back(t(theta, g) - t(t.solution(), g));
    }
    const auto gap = examples::summarize(gaps);
    std::printf("one step on %zu new tasks: loss - optimum = %.3e ± %.3e (max %.3e)\n",
                fresh.size(), gap.mean, gap.std, *std::max_element(gaps.begin(), gaps.end()));
    return 0;
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: dco_tasks [--task least_squares|beverton_holt|smooth_interpolation|"
                 "theorem1] [--meta-tasks N] [--eval-tasks N] [--steps K] [--epochs M] "
                 "[--inner-steps T] [--normalize on|off] [--init tuned|paper] [--momentum B] "
                 "[--activation tanh|relu|sigmoid] [--noise S] [--x-range A,B] [--rows R] "
                 "[--cols C] [--seed N] [--csv FILE] [--plot FILE.png] [--progress] "
                 "[--meta-csv PREFIX]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    bool epochs_given = false;
    auto count = [](const char* text, const char* flag, double lo = 1) {
        return static_cast<int>(examples::parse_number(kProgram, flag, text, lo, 1e9, true));
    };
    auto choice = [](const std::string& v, std::initializer_list<const char*> options) {
        for (const char* o : options)
            if (v == o)
                return;
        usage();
    };
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--progress") {
            s.progress = true;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char* v = argv[++i];
        if (flag == "--task") {
            s.task = v;
            choice(s.task, {"least_squares", "beverton_holt", "smooth_interpolation", "theorem1"});
        } else if (flag == "--meta-tasks") {
            s.meta_tasks = count(v, "--meta-tasks");
        } else if (flag == "--eval-tasks") {
            s.eval_tasks = count(v, "--eval-tasks");
        } else if (flag == "--steps") {
            s.steps = count(v, "--steps");
        } else if (flag == "--epochs") {
            s.epochs = count(v, "--epochs");
            epochs_given = true;
        } else if (flag == "--inner-steps") {
            s.inner_steps = count(v, "--inner-steps");
        } else if (flag == "--normalize") {
            choice(v, {"on", "off"});
            s.normalize = std::string(v) == "on";
        } else if (flag == "--init") {
            choice(v, {"tuned", "paper"});
            s.tuned_init = std::string(v) == "tuned";
        } else if (flag == "--momentum") {
            s.momentum = examples::parse_number(kProgram, "--momentum", v, 0, 0.999);
        } else if (flag == "--activation") {
            const std::string a = v;
            choice(a, {"tanh", "relu", "sigmoid"});
            s.activation = a == "tanh"   ? scaltra::nn::Activation::tanh
                           : a == "relu" ? scaltra::nn::Activation::relu
                                         : scaltra::nn::Activation::sigmoid;
        } else if (flag == "--noise") {
            s.noise = examples::parse_number(kProgram, "--noise", v, 0, 1e6);
        } else if (flag == "--x-range") {
            const std::string r = v;
            const auto comma = r.find(',');
            if (comma == std::string::npos)
                usage();
            s.x_min = examples::parse_number(kProgram, "--x-range", r.substr(0, comma).c_str(),
                                             -1e6, 1e6);
            s.x_max = examples::parse_number(kProgram, "--x-range", r.substr(comma + 1).c_str(),
                                             -1e6, 1e6);
        } else if (flag == "--rows") {
            s.rows = count(v, "--rows");
        } else if (flag == "--cols") {
            s.cols = count(v, "--cols");
        } else if (flag == "--seed") {
            s.seed = static_cast<std::uint64_t>(count(v, "--seed", 0));
        } else if (flag == "--csv") {
            s.csv = v;
        } else if (flag == "--plot") {
            s.png = v;
        } else if (flag == "--meta-csv") {
            s.meta_csv = v;
        } else {
            usage();
        }
    }
    scaltra::set_threads(1);  // products this small gain nothing from threads
    try {
        if (s.task == "theorem1") {
            if (!epochs_given)
                s.epochs = 20000;
            return theorem1(s);
        }
        scaltra::Rng rng(s.seed);
        if (s.task == "least_squares") {
            std::vector<scaltra::data::LeastSquaresTask<S>> train, eval;
            for (int i = 0; i < s.meta_tasks; ++i)
                train.push_back(scaltra::data::least_squares_task<S>(rng));
            for (int i = 0; i < (s.eval_tasks > 0 ? s.eval_tasks : 100); ++i)
                eval.push_back(scaltra::data::least_squares_task<S>(rng));
            return compare(train, eval, scaltra::Layout(100), s,
                           "least squares min |X theta - y|^2, X 100x100");
        }
        const bool bh = s.task == "beverton_holt";
        const std::vector<Index> sizes =
            bh ? std::vector<Index>{1, 5, 5, 1} : std::vector<Index>{1, 10, 10, 1};
        auto make = [&] {
            return bh ? scaltra::data::beverton_holt_task<S>(rng, 500, 100, s.noise)
                      : scaltra::data::smooth_interpolation_task<S>(rng, 500, 100, s.x_min,
                                                                    s.x_max);
        };
        std::deque<scaltra::MlpRegressionTask<S>> train, eval;  // an Mlp is not movable
        for (int i = 0; i < s.meta_tasks; ++i)
            train.emplace_back(make(), sizes, s.activation, 1);
        for (int i = 0; i < (s.eval_tasks > 0 ? s.eval_tasks : (bh ? 100 : 10)); ++i)
            eval.emplace_back(make(), sizes, s.activation, 1);
        return compare(train, eval, train[0].layout(), s,
                       bh ? "Beverton-Holt system identification, MLP 1-5-5-1"
                          : "smooth interpolation a cos(bx) exp(-c|x|), MLP 1-10-10-1");
    } catch (const scaltra::Error& e) {
        std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
        return 1;
    }
}
