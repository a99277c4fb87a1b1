// The SCALTRA note's "batch routine": full-batch training of a small tanh MLP
// (1-32-32-1) on the smooth-interpolation task, f(x) = a cos(bx) e^{−c|x|} with
// a, b, c ~ U(0, 1), 500 training and 100 validation points on [−5, 5], repeated
// over 20 seeds (a new task and new initial weights per seed). SCALTRA and APO
// (the learning rate of SGD, and of Adam, learned with APO's defaults) against
// SGD, Adam and AdaGrad, every optimizer from the same weights of a seed. Prints
// the mean ± std over seeds of the training loss (MSE) at log-spaced steps and
// of the final validation loss, and how many runs diverged (those are counted
// and left out of the mean); writes the mean and std curves as CSV and plots
// them (through gnuplot).
//
//   smooth_regression [--seeds N] [--steps K] [--csv FILE] [--plot FILE.png] [--tune]
//
// The learning rates (SCALTRA's α₀, APO's η₀) are the best mean final training loss over
// the grid {1e-3, 3e-3, …, 10} on 10 other seeds (1001–1010) among those with
// no diverged run; --tune reruns that grid and prints it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <string>
#include <vector>

#include <scaltra/scaltra.hpp>

#include "example_cli.hpp"

namespace {

using S = double;
using scaltra::Mat;
using scaltra::Vec;
using examples::Stat;
using examples::summarize;

struct Entry {
    const char* name;
    double lr;  // chosen by --tune (see the top of the file)
};
constexpr Entry kOptimizers[] = {{"scaltra", 0.3}, {"sgd", 0.1},      {"adam", 3e-2},
                                 {"adagrad", 0.1}, {"apo", 0.1},      {"apo-adam", 3e-2}};

/// One seed's task, network and starting weights.
struct Problem {
    scaltra::data::RegressionTask<S> task;
    scaltra::nn::Mlp<S> model;
    Vec<S> w0;

    explicit Problem(std::uint64_t seed)
        : task([&] {
              scaltra::Rng rng(seed);
              return scaltra::data::smooth_interpolation_task<S>(rng);
          }()),
          model({1, 32, 32, 1}, scaltra::nn::Tanh{}, seed),
          w0(model.init()) {}

    S validation_loss(const Vec<S>& w) {
        Mat<S> out(1, task.validation.inputs.cols());
        model.predict(w, task.validation.inputs, out);
        return (out - task.validation.targets).squaredNorm() / static_cast<S>(out.size());
    }
};

/// The training loss before each of `steps` full-batch steps, then the
/// validation loss; NaN from the step where the run stopped being finite.
struct Curve {
    std::vector<S> loss;
    S validation = std::numeric_limits<S>::quiet_NaN();
};

template <class Opt>
Curve train(Opt opt, Problem& p, int steps) {
    Curve curve;
    curve.loss.assign(static_cast<std::size_t>(steps), std::numeric_limits<S>::quiet_NaN());
    Vec<S> w = p.w0;
    // Full batch, so B′ = B (APO reads it only with λ_FSD > 0).
    scaltra::nn::MlpObjective<S> f(p.model, p.task.train.inputs, p.task.train.targets,
                                   p.task.train.inputs);
    try {
        for (int t = 0; t < steps; ++t)
            curve.loss[static_cast<std::size_t>(t)] = opt.step(w, f);
        curve.validation = p.validation_loss(w);
    } catch (const scaltra::NonFinite&) {
        // diverged: the rest of the curve stays NaN
    }
    return curve;
}

Curve train_named(const std::string& name, double lr, Problem& p, int steps) {
    const auto& layout = p.model.layout();
    if (name == "scaltra")
        return train(scaltra::Scaltra<S>(layout, {.alpha0 = lr}), p, steps);
    if (name == "sgd")
        return train(scaltra::Sgd<S>(layout, {.lr = lr}), p, steps);
    if (name == "adam")
        return train(scaltra::Adam<S>(layout, {.lr = lr}), p, steps);
    if (name == "apo")
        return train(scaltra::Apo<S>(layout, {.base = {.lr = lr}}), p, steps);
    if (name == "apo-adam")
        return train(scaltra::Apo<S, scaltra::Adam<S>>(layout, {.base = {.lr = lr}}), p, steps);
    return train(scaltra::AdaGrad<S>(layout, {.lr = lr}), p, steps);
}

/// A run diverged when it stopped being finite or ended above where it started.
bool diverged(const Curve& c) {
    return !(c.loss.back() <= c.loss.front());
}

void tune(int steps) {
    const double grid[] = {1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3, 10};
    std::printf(
        "mean final training loss over seeds 1001-1010, %d steps "
        "(div: a run diverged)\n%-9s",
        steps, "lr");
    for (double lr : grid)
        std::printf(" %10g", lr);
    std::printf("\n");
    std::deque<Problem> problems;  // Mlp holds its tape: not movable
    for (std::uint64_t seed = 1001; seed <= 1010; ++seed)
        problems.emplace_back(seed);
    for (const auto& e : kOptimizers) {
        std::printf("%-9s", e.name);
        for (double lr : grid) {
            std::vector<S> finals;
            bool any_diverged = false;
            for (auto& p : problems) {
                const Curve c = train_named(e.name, lr, p, steps);
                finals.push_back(c.loss.back());
                any_diverged |= diverged(c);
            }
            if (any_diverged)
                std::printf(" %10s", "div");
            else
                std::printf(" %10.3e", summarize(finals).mean);
            std::fflush(stdout);
        }
        std::printf("\n");
    }
}

bool plot(const std::vector<std::vector<Stat>>& curves, const std::vector<int>& diverged_runs,
          const std::string& path) {
    FILE* gp = popen("gnuplot 2>&1", "w");
    if (gp == nullptr)
        return false;
    const std::size_t n = std::size(kOptimizers);
    for (std::size_t o = 0; o < n; ++o) {
        std::fprintf(gp, "$c%zu << EOD\n", o);
        for (std::size_t t = 0; t < curves[o].size(); ++t) {
            const Stat& s = curves[o][t];
            if (std::isfinite(s.mean))  // the band is floored at mean/10 on the log axis
                std::fprintf(gp, "%zu %g %g %g\n", t + 1, s.mean,
                             std::max(s.mean - s.std, s.mean / 10), s.mean + s.std);
        }
        std::fprintf(gp, "EOD\n");
    }
    std::fprintf(
        gp,
        "set terminal pngcairo size 900,560 font ',10'\nset output '%s'\n"
        "set logscale xy\nset xrange [1:%d]\nset format y '%%.0e'\nset grid\nset key top right\n"
        "set xlabel 'full-batch step'\nset ylabel 'training MSE (mean ± std over "
        "seeds; band floored at mean/10)'\nset style fill transparent solid 0.2 noborder\nplot ",
        path.c_str(), static_cast<int>(curves[0].size()));
    for (std::size_t o = 0; o < n; ++o)
        std::fprintf(gp,
                     "%s$c%zu using 1:3:4 with filledcurves lc %zu notitle, $c%zu using 1:2 "
                     "with lines lw 2 lc %zu title '%s (lr %g%s)'",
                     o ? ", " : "", o, o + 1, o, o + 1, kOptimizers[o].name, kOptimizers[o].lr,
                     diverged_runs[o]
                         ? ("; " + std::to_string(diverged_runs[o]) + " diverged, left out").c_str()
                         : "");
    std::fprintf(gp, "\n");
    return pclose(gp) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    int seeds = 20, steps = 2000;
    std::string csv, png;
    auto count = [](const char* text, const char* flag) {
        return static_cast<int>(
            examples::parse_number("smooth_regression", flag, text, 1, 1e6, true));
    };
    bool tuning = false;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--tune") {
            tuning = true;
        } else if (i + 1 < argc && flag == "--seeds") {
            seeds = count(argv[++i], "--seeds");
        } else if (i + 1 < argc && flag == "--steps") {
            steps = count(argv[++i], "--steps");
        } else if (i + 1 < argc && flag == "--csv") {
            csv = argv[++i];
        } else if (i + 1 < argc && flag == "--plot") {
            png = argv[++i];
        } else {
            std::fprintf(stderr,
                         "usage: smooth_regression [--seeds N] [--steps K] [--csv FILE] "
                         "[--plot FILE.png] [--tune]\n");
            return 2;
        }
    }
    scaltra::set_threads(1);  // products this small gain nothing from threads
    if (tuning) {
        tune(steps);
        return 0;
    }

    // losses[o][t][s]: optimizer o, step t, seed s.
    const std::size_t n = std::size(kOptimizers);
    std::vector<std::vector<std::vector<S>>> losses(
        n, std::vector<std::vector<S>>(static_cast<std::size_t>(steps)));
    std::vector<std::vector<S>> validation(n);
    std::vector<int> diverged_runs(n, 0);
    for (int seed = 1; seed <= seeds; ++seed) {
        Problem p(static_cast<std::uint64_t>(seed));
        for (std::size_t o = 0; o < n; ++o) {
            const Curve c = train_named(kOptimizers[o].name, kOptimizers[o].lr, p, steps);
            if (diverged(c)) {  // counted, and left out of the mean and std
                ++diverged_runs[o];
                continue;
            }
            for (std::size_t t = 0; t < c.loss.size(); ++t)
                losses[o][t].push_back(c.loss[t]);
            validation[o].push_back(c.validation);
        }
    }
    std::vector<std::vector<Stat>> curves(n);
    for (std::size_t o = 0; o < n; ++o)
        for (const auto& at_step : losses[o])
            curves[o].push_back(summarize(at_step));

    std::printf(
        "smooth interpolation, MLP 1-32-32-1 tanh, full batch (500 points), %d seeds, "
        "%d steps\ntraining MSE before step t, mean ± std over the runs that did not "
        "diverge:\n%-9s %8s",
        seeds, steps, "optimizer", "lr");
    std::vector<int> marks;
    for (int t = 1; t <= steps; t *= 10)
        marks.push_back(t);
    if (marks.back() != steps)
        marks.push_back(steps);
    for (int t : marks)
        std::printf(" %21s", ("t = " + std::to_string(t)).c_str());
    std::printf(" %21s %9s\n", "validation MSE", "diverged");
    for (std::size_t o = 0; o < n; ++o) {
        std::printf("%-9s %8g", kOptimizers[o].name, kOptimizers[o].lr);
        for (int t : marks) {
            const Stat& s = curves[o][static_cast<std::size_t>(t - 1)];
            std::printf("  %9.3e ± %8.2e", s.mean, s.std);
        }
        const Stat v = summarize(validation[o]);
        std::printf("  %9.3e ± %8.2e %9d\n", v.mean, v.std, diverged_runs[o]);
    }

    if (!csv.empty()) {
        std::FILE* out = examples::open_output("smooth_regression", csv);
        if (out == nullptr)
            return 1;
        std::fprintf(out, "step");
        for (const auto& e : kOptimizers)
            std::fprintf(out, ",%s_mean,%s_std", e.name, e.name);
        std::fprintf(out, "\n");
        for (std::size_t t = 0; t < static_cast<std::size_t>(steps); ++t) {
            std::fprintf(out, "%zu", t + 1);
            for (std::size_t o = 0; o < n; ++o)
                std::fprintf(out, ",%.9g,%.9g", curves[o][t].mean, curves[o][t].std);
            std::fprintf(out, "\n");
        }
        std::fclose(out);
        std::printf("csv: %s\n", csv.c_str());
    }
    if (!png.empty()) {
        if (!plot(curves, diverged_runs, png)) {
            examples::report_plot_failure("smooth_regression", png);
            return 1;
        }
        std::printf("plot: %s\n", png.c_str());
    }
    return 0;
}
