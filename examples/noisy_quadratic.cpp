// LODO on the noisy quadratic bowl (the LODO paper's first experiment;
// ALGORITHMS.md, L6): f(x) = ½(x − c)ᵀH(x − c) in n = 100 dimensions, H with
// eigenvalues log-spaced in [1e-3, 1] and rotated by a Haar-random orthogonal
// matrix, and a centre that takes a random-walk step c ← c + N(0, I) after
// every step, so the optimizer chases a moving minimum from x = c = 0. The best
// fixed preconditioner here is H⁻¹; LODO learns its G(θ) towards it online.
//
// Prints, at 1e2, 1e3, 1e4, … steps, LODO's inverse-Hessian error ‖I − GH‖_F/√n
// (0.883 at the start, G = I) and every optimizer's mean loss over the last 1000
// steps; LODO with its diagonal and global ablations against momentum SGD,
// RMSProp and Adam, all on the same bowl and the same walk. Writes the curves as
// CSV and plots them (through gnuplot).
//
//   noisy_quadratic [--steps K] [--dim N] [--seed S] [--alpha0 A] [--beta B]
//                   [--meta-lr LR] [--csv FILE] [--plot FILE.png] [--tune]
//
// The baselines' learning rates are the best mean loss over the last 1000 of
// 1e4 steps, over the grid {1e-3, 3e-3, …, 10}, on another bowl (seed 1001);
// --tune reruns that grid and prints it. LODO and its ablations run with the
// library's defaults (α₀ 1, β 0.9, meta-lr 1e-3) unless --alpha0, --beta or
// --meta-lr say otherwise.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <scaltra/scaltra.hpp>

#include "example_cli.hpp"

namespace {

using S = double;
using scaltra::Mat;
using scaltra::Vec;
using Bowl = scaltra::data::NoisyQuadraticBowl<S>;

enum class Kind { lodo, lodo_diagonal, lodo_global, momentum_sgd, rmsprop, adam };
struct Entry {
    const char* name;
    Kind kind;
    double lr;  // the baselines' (chosen by --tune, see the top of the file)
};
constexpr Entry kOptimizers[] = {{"lodo", Kind::lodo, 0},
                                 {"lodo-diagonal", Kind::lodo_diagonal, 0},
                                 {"lodo-global", Kind::lodo_global, 0},
                                 {"momentum-sgd", Kind::momentum_sgd, 1},
                                 {"rmsprop", Kind::rmsprop, 1},
                                 {"adam", Kind::adam, 3}};
constexpr std::int64_t kWindow = 1000;  // the loss is averaged over the last 1000 steps

bool is_lodo(Kind k) {
    return k == Kind::lodo || k == Kind::lodo_diagonal || k == Kind::lodo_global;
}

/// LODO's G(θ) column by column: a move from 0 with m = e_j is −G e_j.
template <class Opt>
Mat<S> implicit_G(const Opt& opt) {
    const scaltra::Index n = opt.layout().size();
    auto state = opt.state();
    Mat<S> G(n, n);
    Vec<S> x(n);
    for (scaltra::Index j = 0; j < n; ++j) {
        state.m = Vec<S>::Unit(n, j);
        x.setZero();
        opt.rule().move(state, x);
        G.col(j) = -x;
    }
    return G;
}

/// One optimizer's run: the loss of every step (infinite from where it diverged),
/// and LODO's inverse-Hessian error at the steps in `probes` (NaN for the others).
struct Run {
    std::vector<double> loss;
    std::vector<double> error;
};

template <class Opt>
Run run(Opt opt, Bowl bowl, std::int64_t steps, const std::vector<std::int64_t>& probes) {
    Run r;
    r.loss.reserve(static_cast<std::size_t>(steps));
    Vec<S> x = Vec<S>::Zero(bowl.size());
    auto f = [&](const Eigen::Ref<const Vec<S>>& at, Eigen::Ref<Vec<S>> g) {
        return bowl(at, g);
    };
    std::size_t next = 0;
    for (std::int64_t t = 0; t <= steps; ++t) {
        if (next < probes.size() && probes[next] == t) {
            if constexpr (requires { opt.rule(); })
                r.error.push_back(bowl.inverse_hessian_error(implicit_G(opt)));
            else
                r.error.push_back(NAN);
            ++next;
        }
        if (t == steps)
            break;
        try {
            r.loss.push_back(opt.step(x, f));
        } catch (const scaltra::NonFinite&) {  // diverged: the rest counts as infinite loss
            r.loss.resize(static_cast<std::size_t>(steps), INFINITY);
            r.error.resize(probes.size(), NAN);
            break;
        }
        bowl.drift();
    }
    return r;
}

/// LODO's settings from the command line (its defaults otherwise).
struct LodoSettings {
    double alpha0 = 1, beta = 0.9, meta_lr = 1e-3;

    scaltra::LodoOptions<S> options(scaltra::LodoForm form) const {
        return {.alpha0 = alpha0, .beta = beta, .form = form, .meta = {.lr = meta_lr}};
    }
};

Run run(const Entry& e, const LodoSettings& lodo, std::int64_t n, std::uint64_t seed,
        std::int64_t steps, const std::vector<std::int64_t>& probes, double lr) {
    const Bowl bowl(n, seed);
    switch (e.kind) {
        case Kind::lodo:
            return run(scaltra::Lodo<S>(n, lodo.options(scaltra::LodoForm::full)), bowl, steps,
                       probes);
        case Kind::lodo_diagonal:
            return run(scaltra::Lodo<S>(n, lodo.options(scaltra::LodoForm::diagonal)), bowl, steps,
                       probes);
        case Kind::lodo_global:
            return run(scaltra::Lodo<S>(n, lodo.options(scaltra::LodoForm::global)), bowl, steps,
                       probes);
        case Kind::momentum_sgd:
            return run(scaltra::Sgd<S>(n, {.lr = lr, .momentum = 0.9}), bowl, steps, probes);
        case Kind::rmsprop:
            return run(scaltra::RmsProp<S>(n, {.lr = lr}), bowl, steps, probes);
        case Kind::adam:
            return run(scaltra::Adam<S>(n, {.lr = lr}), bowl, steps, probes);
    }
    return {};
}

/// Mean loss over the steps (t − 1000, t], or over all t when t < 1000.
double window_mean(const std::vector<double>& loss, std::int64_t t) {
    const std::int64_t from = std::max<std::int64_t>(0, t - kWindow);
    double sum = 0;
    for (std::int64_t i = from; i < t; ++i)
        sum += loss[static_cast<std::size_t>(i)];
    return sum / static_cast<double>(t - from);
}

void tune(std::int64_t n) {
    const double grid[] = {1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3, 10};
    std::printf("mean loss over the last %lld of 10000 steps, bowl seed 1001\n%-14s",
                static_cast<long long>(kWindow), "lr");
    for (double lr : grid)
        std::printf(" %10g", lr);
    std::printf("\n");
    for (const Entry& e : kOptimizers) {
        if (is_lodo(e.kind))
            continue;
        std::printf("%-14s", e.name);
        for (double lr : grid) {
            const Run r = run(e, LodoSettings{}, n, 1001, 10000, {}, lr);
            const double mean = window_mean(r.loss, 10000);
            std::printf(" %10.4g", std::isfinite(mean) ? mean : INFINITY);
            std::fflush(stdout);
        }
        std::printf("\n");
    }
}

bool plot(const std::vector<Run>& runs, const std::vector<std::int64_t>& probes, std::int64_t steps,
          const LodoSettings& lodo, const std::string& path) {
    FILE* gp = popen("gnuplot 2>&1", "w");
    if (gp == nullptr)
        return false;
    const std::size_t count = std::size(kOptimizers);
    for (std::size_t o = 0; o < count; ++o) {
        std::fprintf(gp, "$l%zu << EOD\n", o);
        for (std::int64_t t : probes)
            if (t > 0)
                std::fprintf(gp, "%lld %g\n", static_cast<long long>(t),
                             window_mean(runs[o].loss, t));
        std::fprintf(gp, "EOD\n$e%zu << EOD\n", o);
        for (std::size_t p = 0; p < probes.size(); ++p)
            if (std::isfinite(runs[o].error[p]))
                std::fprintf(gp, "%lld %g\n",
                             static_cast<long long>(std::max<std::int64_t>(probes[p], 1)),
                             runs[o].error[p]);
        std::fprintf(gp, "EOD\n");
    }
    std::fprintf(gp,
                 "set terminal pngcairo size 900,900 font ',10'\nset output '%s'\n"
                 "set multiplot layout 2,1\nset logscale x\nset xrange [1:%lld]\nset grid\n"
                 "set key outside right\nset lmargin at screen 0.08\nset rmargin at screen "
                 "0.62\nset logscale y\nset format y '%%.0e'\n"
                 "set title 'noisy quadratic bowl: mean loss over the last 1000 steps'\n"
                 "set xlabel 'step'\nset ylabel 'loss'\nplot ",
                 path.c_str(), static_cast<long long>(steps));
    for (std::size_t o = 0; o < count; ++o) {
        const Entry& e = kOptimizers[o];
        if (is_lodo(e.kind))
            std::fprintf(gp, "%s$l%zu with lines lw 2 lc %zu title '%s (α₀ %g, meta-lr %g)'",
                         o ? ", " : "", o, o + 1, e.name, lodo.alpha0, lodo.meta_lr);
        else
            std::fprintf(gp, "%s$l%zu with lines lw 2 lc %zu title '%s (lr %g)'", o ? ", " : "", o,
                         o + 1, e.name, e.lr);
    }
    std::fprintf(gp,
                 "\nunset logscale y\nset format y '%%.2f'\nset yrange [0:*]\n"
                 "set title 'inverse-Hessian error ||I - G H||_F / sqrt(n)'\nset ylabel "
                 "'error'\nplot ");
    bool first = true;
    for (std::size_t o = 0; o < count; ++o)
        if (is_lodo(kOptimizers[o].kind)) {
            std::fprintf(gp, "%s$e%zu with lines lw 2 lc %zu title '%s'", first ? "" : ", ", o,
                         o + 1, kOptimizers[o].name);
            first = false;
        }
    std::fprintf(gp, "\nunset multiplot\n");
    return pclose(gp) == 0;
}

/// A table entry; a run that diverged shows "div".
void print_value(const char* format, double v) {
    if (!std::isfinite(v)) {
        std::printf(" %10s", "div");
        return;
    }
    std::printf(" ");
    std::printf(format, v);
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: noisy_quadratic [--steps K] [--dim N] [--seed S] [--alpha0 A] "
                 "[--beta B] [--meta-lr LR] [--csv FILE] [--plot FILE.png] [--tune]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    long steps = 10000, dim = 100, seed = 1;
    LodoSettings lodo;
    std::string csv, png;
    bool tuning = false;
    auto count = [](const char* text, const char* flag) {
        return static_cast<long>(
            examples::parse_number("noisy_quadratic", flag, text, 1, 1e9, true));
    };
    auto number = [](const char* text, const char* flag) {
        return examples::parse_number("noisy_quadratic", flag, text, -INFINITY, INFINITY);
    };
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--tune") {
            tuning = true;
        } else if (i + 1 >= argc) {
            usage();
        } else if (flag == "--steps") {
            steps = count(argv[++i], "--steps");
        } else if (flag == "--dim") {
            dim = count(argv[++i], "--dim");
        } else if (flag == "--seed") {
            seed = count(argv[++i], "--seed");
        } else if (flag == "--alpha0") {
            lodo.alpha0 = number(argv[++i], "--alpha0");  // the options check the ranges
        } else if (flag == "--beta") {
            lodo.beta = number(argv[++i], "--beta");
        } else if (flag == "--meta-lr") {
            lodo.meta_lr = number(argv[++i], "--meta-lr");
        } else if (flag == "--csv") {
            csv = argv[++i];
        } else if (flag == "--plot") {
            png = argv[++i];
        } else {
            usage();
        }
    }
    try {
        if (tuning) {
            tune(dim);
            return 0;
        }
        // Probes: 20 log-spaced steps per decade, and every power of ten.
        std::vector<std::int64_t> probes{0};
        for (int i = 0; i <= static_cast<int>(20 * std::log10(static_cast<double>(steps))); ++i) {
            const auto t = static_cast<std::int64_t>(std::llround(std::pow(10.0, i / 20.0)));
            if (t > probes.back() && t <= steps)
                probes.push_back(t);
        }
        if (probes.back() != steps)
            probes.push_back(steps);
        std::vector<Run> runs;
        for (const Entry& e : kOptimizers)
            runs.push_back(
                run(e, lodo, dim, static_cast<std::uint64_t>(seed), steps, probes, e.lr));

        std::printf("noisy quadratic bowl, n = %ld, seed %ld; LODO α₀ %g, β %g, meta-lr %g\n\n",
                    dim, seed, lodo.alpha0, lodo.beta, lodo.meta_lr);
        std::vector<std::int64_t> decades;
        for (std::int64_t t = 100; t <= steps; t *= 10)
            decades.push_back(t);
        std::printf("%-28s", "inverse-Hessian error at");
        std::printf(" %10s", "start");
        for (std::int64_t t : decades)
            std::printf(" %10lld", static_cast<long long>(t));
        std::printf("\n");
        auto error_at = [&](const Run& r, std::int64_t t) {
            for (std::size_t p = 0; p < probes.size(); ++p)
                if (probes[p] == t)
                    return r.error[p];
            return double(NAN);
        };
        for (std::size_t o = 0; o < runs.size(); ++o) {
            if (!is_lodo(kOptimizers[o].kind))
                continue;
            std::printf("%-28s %10.4f", kOptimizers[o].name, runs[o].error[0]);
            for (std::int64_t t : decades)
                print_value("%10.4f", error_at(runs[o], t));
            std::printf("\n");
        }
        std::printf("\n%-28s", "mean loss (last 1000) at");
        for (std::int64_t t : decades)
            std::printf(" %10lld", static_cast<long long>(t));
        std::printf("\n");
        for (std::size_t o = 0; o < runs.size(); ++o) {
            const Entry& e = kOptimizers[o];
            const std::string label =
                is_lodo(e.kind)
                    ? std::string(e.name)
                    : std::string(e.name) + " (lr " + std::to_string(e.lr).substr(0, 6) + ")";
            std::printf("%-28s", label.c_str());
            for (std::int64_t t : decades)
                print_value("%10.4g", window_mean(runs[o].loss, t));
            std::printf("\n");
        }

        if (!csv.empty()) {
            std::FILE* out = examples::open_output("noisy_quadratic", csv);
            if (out == nullptr)
                return 1;
            std::fprintf(out, "step");
            for (const Entry& e : kOptimizers)
                std::fprintf(out, ",loss_%s", e.name);
            for (const Entry& e : kOptimizers)
                if (is_lodo(e.kind))
                    std::fprintf(out, ",error_%s", e.name);
            std::fprintf(out, "\n");
            for (std::size_t p = 1; p < probes.size(); ++p) {
                std::fprintf(out, "%lld", static_cast<long long>(probes[p]));
                for (const Run& r : runs)
                    std::fprintf(out, ",%.6g", window_mean(r.loss, probes[p]));
                for (std::size_t o = 0; o < runs.size(); ++o)
                    if (is_lodo(kOptimizers[o].kind))
                        std::fprintf(out, ",%.6g", runs[o].error[p]);
                std::fprintf(out, "\n");
            }
            std::fclose(out);
            std::printf("\ncsv: %s\n", csv.c_str());
        }
        if (!png.empty()) {
            if (!plot(runs, probes, steps, lodo, png)) {
                examples::report_plot_failure("noisy_quadratic", png);
                return 1;
            }
            std::printf("plot: %s\n", png.c_str());
        }
    } catch (const scaltra::Error& e) {
        std::fprintf(stderr, "noisy_quadratic: %s\n", e.what());
        return 1;
    }
}
