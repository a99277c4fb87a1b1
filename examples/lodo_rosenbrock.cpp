// The LODO paper's Rosenbrock experiment (ALGORITHMS.md, L7): minimise
// f(x, y) = 0.01(1 − x)² + (y − x²)² from (−0.5, 2) in 200 steps. The valley
// floor is 100 times flatter than its walls, so a fixed step size either
// crawls along the floor or bounces off the walls; LODO has to learn the
// curvature on the way. LODO, at its defaults and at its best α₀, against
// momentum SGD, RMSProp and Adam, each at the learning rate from the grid
// {1e-3, 3e-3, …, 3} with the lowest mean loss over the last 20 steps (the
// problem is deterministic, so each is tuned on the run it reports).
//
//   lodo_rosenbrock [--steps K] [--csv FILE]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <scaltra/scaltra.hpp>

#include "example_cli.hpp"

namespace {

using S = double;
using scaltra::Vec;

/// f and its gradient.
S valley(const Eigen::Ref<const Vec<S>>& p, Eigen::Ref<Vec<S>> g) {
    const S x = p[0], y = p[1], r = y - x * x;
    g[0] = -0.02 * (1 - x) - 4 * x * r;
    g[1] = 2 * r;
    return 0.01 * (1 - x) * (1 - x) + r * r;
}

/// The losses of `steps` steps from (−0.5, 2), infinite from where it diverged.
template <class Opt>
std::vector<S> run(Opt opt, long steps, std::vector<Vec<S>>* path = nullptr) {
    Vec<S> p(2);
    p << -0.5, 2;
    std::vector<S> loss;
    for (long t = 0; t < steps; ++t) {
        if (path)
            path->push_back(p);
        try {
            loss.push_back(opt.step(p, valley));
        } catch (const scaltra::NonFinite&) {
            loss.resize(static_cast<std::size_t>(steps), INFINITY);
            break;
        }
    }
    if (path && std::isfinite(loss.back()))
        path->push_back(p);
    return loss;
}

/// Mean loss over the last tenth of the run (the paper's measure).
S tail_mean(const std::vector<S>& loss) {
    const std::size_t from = loss.size() - loss.size() / 10;
    S sum = 0;
    for (std::size_t i = from; i < loss.size(); ++i)
        sum += loss[i];
    return sum / static_cast<S>(loss.size() - from);
}

using Factory = std::function<std::vector<S>(double lr, std::vector<Vec<S>>* path)>;

/// The Factory of an optimizer made from its learning rate by `make`.
template <class Make>
Factory runs_of(Make make, long steps) {
    return [make, steps](double lr, std::vector<Vec<S>>* path) {
        return run(make(lr), steps, path);
    };
}

struct Best {
    double lr;
    std::vector<S> loss;
};

Best best_of_grid(const Factory& make) {
    Best best{0, {}};
    for (double lr : {1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0}) {
        std::vector<S> loss = make(lr, nullptr);
        if (best.loss.empty() || tail_mean(loss) < tail_mean(best.loss))
            best = {lr, std::move(loss)};
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    long steps = 200;
    std::string csv;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            steps = static_cast<long>(
                examples::parse_number("lodo_rosenbrock", "--steps", argv[++i], 10, 1e9, true));
        } else if (std::strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            csv = argv[++i];
        } else {
            std::fprintf(stderr, "usage: lodo_rosenbrock [--steps K] [--csv FILE]\n");
            return 2;
        }
    }
    try {
        struct Row {
            std::string name;
            Factory make;
            bool tuned;
        };
        const std::vector<Row> rows = {
            {"LODO (defaults, α₀ 1)", runs_of([](double) { return scaltra::Lodo<S>(2); }, steps),
             false},
            {"LODO", runs_of([](double lr) { return scaltra::Lodo<S>(2, {.alpha0 = lr}); }, steps),
             true},
            {"momentum SGD (0.9)",
             runs_of([](double lr) { return scaltra::Sgd<S>(2, {.lr = lr, .momentum = 0.9}); },
                     steps),
             true},
            {"RMSProp",
             runs_of([](double lr) { return scaltra::RmsProp<S>(2, {.lr = lr}); }, steps), true},
            {"Adam", runs_of([](double lr) { return scaltra::Adam<S>(2, {.lr = lr}); }, steps),
             true},
        };
        std::printf(
            "f(x, y) = 0.01(1 - x)^2 + (y - x^2)^2 from (-0.5, 2), %ld steps; lr (LODO: α₀) "
            "from {1e-3, 3e-3, ..., 3}\n\n%-24s %8s %14s %14s %10s %10s\n",
            steps, "optimizer", "lr", "mean last 10%", "final loss", "x", "y");
        std::FILE* out = csv.empty() ? nullptr : examples::open_output("lodo_rosenbrock", csv);
        if (!csv.empty() && out == nullptr)
            return 1;
        if (out)
            std::fprintf(out, "optimizer,lr,step,x,y,loss\n");
        for (const Row& row : rows) {
            const Best best =
                row.tuned ? best_of_grid(row.make) : Best{1.0, row.make(1.0, nullptr)};
            std::vector<Vec<S>> path;
            row.make(best.lr, &path);
            const Vec<S>& end = path.back();
            std::printf("%-24s %8g %14.4e %14.4e %10.4f %10.4f\n", row.name.c_str(), best.lr,
                        tail_mean(best.loss), best.loss.back(), end[0], end[1]);
            if (out)
                for (std::size_t t = 0; t < path.size(); ++t) {
                    Vec<S> g(2);
                    std::fprintf(out, "\"%s\",%g,%zu,%.6g,%.6g,%.6g\n", row.name.c_str(), best.lr,
                                 t, path[t][0], path[t][1], valley(path[t], g));
                }
        }
        if (out) {
            std::fclose(out);
            std::printf("\ncsv: %s\n", csv.c_str());
        }
    } catch (const scaltra::Error& e) {
        std::fprintf(stderr, "lodo_rosenbrock: %s\n", e.what());
        return 1;
    }
}
