// train/: minimize's statuses and counts, and every built-in callback.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>
#include <scaltra/train.hpp>

#include <catch2/catch.hpp>

using scaltra::Vec;
using VecRef = Eigen::Ref<const Vec<double>>;
using GradRef = Eigen::Ref<Vec<double>>;

namespace {

std::size_t count_lines(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

struct StopAt {
    std::int64_t at;
    template <class Opt>
    bool on_step(const Opt&, const scaltra::Progress<double>& p, const VecRef&) const {
        return p.iteration == at;
    }
};

struct CountHooks {
    int begin = 0, evaluate = 0, step = 0, epoch = 0, end = 0;
    template <class Opt>
    void on_begin(const Opt&, const scaltra::Progress<double>&, const VecRef&) {
        ++begin;
    }
    template <class Opt>
    void on_evaluate(const Opt&, const scaltra::Progress<double>&, const VecRef&, GradRef) {
        ++evaluate;
    }
    template <class Opt>
    void on_step(const Opt&, const scaltra::Progress<double>&, const VecRef&) {
        ++step;
    }
    template <class Opt>
    void on_epoch_end(const Opt&, const scaltra::Progress<double>&, const VecRef&) {
        ++epoch;
    }
    template <class Opt>
    void on_end(const Opt&, const scaltra::Progress<double>&, const VecRef&) {
        ++end;
    }
};

struct NoHooks {
    void on_stepp() {}
};

struct MutableProgress {  // on_step takes a non-const Progress: the driver cannot call it
    template <class Opt>
    void on_step(const Opt&, scaltra::Progress<double>&, const VecRef&) {}
};

struct RecordEpochs {
    std::vector<double>* out;
    template <class Opt>
    void on_epoch_end(const Opt&, const scaltra::Progress<double>& p, const VecRef&) const {
        out->push_back(p.epoch_loss);
    }
};

using AdamD = scaltra::Adam<double>;

}  // namespace

// What the drivers accept as a callback, as the compiler sees it.
static_assert(scaltra::detail::valid_callback<StopAt, AdamD, double>);
static_assert(scaltra::detail::valid_callback<CountHooks, AdamD, double>);
static_assert(scaltra::detail::valid_callback<scaltra::PrintLoss, AdamD, double>);
static_assert(scaltra::detail::valid_callback<const scaltra::TimeLimit, AdamD, double>);
static_assert(!scaltra::detail::valid_callback<NoHooks, AdamD, double>, "no hook at all");
static_assert(scaltra::detail::valid_callback<const scaltra::PrintLoss, AdamD, double>);
static_assert(!scaltra::detail::valid_callback<const scaltra::EarlyStopAtMinLoss, AdamD, double>,
              "a const callback whose hook is not const");
static_assert(!scaltra::detail::valid_callback<MutableProgress, AdamD, double>,
              "a hook with a parameter the driver cannot pass");
static_assert(!scaltra::detail::valid_callback<scaltra::KeepBest<float>, AdamD, double>,
              "a callback for the other scalar");

TEST_CASE("minimize converges to the known optimum and reports it", "[train]") {
    const auto problem = scaltra::problems::LogisticRegression<double>::synthetic(200, 5, 0.01, 3);
    scaltra::Sgd<double> opt(5, {.lr = 0.5, .momentum = 0.9, .nesterov = true});
    Vec<double> w = problem.initial_point();
    CountHooks hooks;
    const auto r = scaltra::minimize(opt, problem, w,
                                     {.max_iterations = 5000, .gradient_tolerance = 1e-9}, hooks);
    CHECK(r.status == scaltra::Status::converged);
    CHECK((w - problem.optimum()).norm() < 1e-7);
    CHECK(r.loss == Approx(problem.optimal_value()).epsilon(1e-12));
    CHECK(r.gradient_norm < 1e-8);
    CHECK(r.objective_calls == r.iterations + 1);  // one call per step plus the final one
    CHECK(hooks.begin == 1);
    CHECK(hooks.end == 1);
    CHECK(hooks.step == r.iterations);
    CHECK(hooks.epoch == r.iterations);  // steps_per_epoch = 1
    CHECK(hooks.evaluate == r.objective_calls);
}

TEST_CASE("minimize stops at the iteration budget, on request, and on non-finite values",
          "[train]") {
    const scaltra::problems::Rosenbrock<double> rb;
    Vec<double> x = rb.initial_point();
    scaltra::Adam<double> opt(2);

    auto r = scaltra::minimize(opt, rb, x, {.max_iterations = 30});
    CHECK(r.status == scaltra::Status::max_iterations);
    CHECK(r.iterations == 30);

    opt.reset();
    x = rb.initial_point();
    r = scaltra::minimize(opt, rb, x, StopAt{7});
    CHECK(r.status == scaltra::Status::stopped_by_callback);
    CHECK(r.iterations == 7);

    int calls = 0;
    auto blows_up = [&](const VecRef& at, GradRef g) {
        return ++calls > 5 ? std::numeric_limits<double>::quiet_NaN() : rb(at, g);
    };
    opt.reset();
    x = rb.initial_point();
    r = scaltra::minimize(opt, blows_up, x, {.max_iterations = 100});
    CHECK(r.status == scaltra::Status::non_finite);
    CHECK(r.iterations == 5);
    CHECK(x.allFinite());

    CHECK_THROWS_AS(scaltra::minimize(opt, rb, x, {.max_iterations = 0}), scaltra::InvalidArgument);
    CHECK_THROWS_AS(scaltra::minimize(opt, rb, x, {.steps_per_epoch = -1}),
                    scaltra::InvalidArgument);
}

TEST_CASE("convergence ends the run at the point whose gradient met the tolerance", "[train]") {
    const scaltra::problems::Sphere<double> sphere(3);
    Vec<double> x = Vec<double>::Constant(3, 1e-4);  // |∇f| ≈ 3.5e-4: converged already
    const Vec<double> start = x;
    AdamD opt(3, {.lr = 0.1});  // a step would move x by about lr, far from the optimum
    const auto before = opt.state();
    const auto r = scaltra::minimize(opt, sphere, x, {.gradient_tolerance = 1e-3});
    CHECK(r.status == scaltra::Status::converged);
    CHECK(r.iterations == 0);
    CHECK(r.objective_calls == 1);
    CHECK(x == start);
    CHECK(scaltra::bitwise_equal(opt.state(), before));
    CHECK(r.gradient_norm == Approx(2e-4 * std::sqrt(3.0)));
}

TEST_CASE("TimeLimit stops a run once its budget is spent", "[train]") {
    const scaltra::problems::Sphere<double> sphere(3);
    Vec<double> x = sphere.initial_point();
    AdamD opt(3);
    const auto r = scaltra::minimize(opt, sphere, x, scaltra::TimeLimit(1e-12));
    CHECK(r.status == scaltra::Status::stopped_by_callback);
    CHECK(r.iterations == 1);  // any step takes longer than a picosecond
    CHECK_THROWS_AS(scaltra::TimeLimit(0), scaltra::InvalidArgument);
}

TEST_CASE(
    "under the skip policy non-finite steps are skipped, counted, and kept out of the "
    "epoch loss",
    "[train]") {
    const scaltra::problems::Sphere<double> sphere(2);
    Vec<double> x = sphere.initial_point();
    scaltra::Sgd<double> opt(2, {.lr = 0.25, .on_non_finite = scaltra::NonFinitePolicy::skip});
    int calls = 0;
    auto every_third_nan = [&](const VecRef& at, GradRef g) {
        const double f = sphere(at, g);
        return ++calls % 3 == 0 ? std::numeric_limits<double>::quiet_NaN() : f;
    };
    std::vector<double> epoch_losses;
    const auto r =
        scaltra::minimize(opt, every_third_nan, x, {.max_iterations = 6, .steps_per_epoch = 3},
                          RecordEpochs{&epoch_losses});
    CHECK(r.status == scaltra::Status::max_iterations);
    CHECK(r.iterations == 6);
    CHECK(r.skipped_steps == 2);
    // x ← x/2 on every taken step: losses 2, 0.5 (skip), 0.125, 0.03125 (skip).
    REQUIRE(epoch_losses.size() == 2);
    CHECK(epoch_losses[0] == Approx((2.0 + 0.5) / 2));
    CHECK(epoch_losses[1] == Approx((0.125 + 0.03125) / 2));
    CHECK(x.isApprox(Vec<double>::Constant(2, 1.0 / 16)));
}

TEST_CASE("EarlyStopAtMinLoss stops after `patience` epochs without improvement", "[train]") {
    const scaltra::problems::Sphere<double> sphere(3);
    Vec<double> x = sphere.initial_point();
    scaltra::Sgd<double> frozen(3, {.lr = 0.0});  // the loss never improves after epoch 1
    scaltra::EarlyStopAtMinLoss early(4);
    const auto r =
        scaltra::minimize(frozen, sphere, x, {.max_iterations = 100, .steps_per_epoch = 2}, early);
    CHECK(r.status == scaltra::Status::stopped_by_callback);
    CHECK(r.iterations == 2 * (1 + 4));
    CHECK(early.best_loss() == Approx(3.0));
    CHECK_THROWS_AS(scaltra::EarlyStopAtMinLoss(0), scaltra::InvalidArgument);
}

TEST_CASE("KeepBest keeps the lowest-loss point evaluated", "[train]") {
    const scaltra::problems::Sphere<double> sphere(2);
    Vec<double> x = sphere.initial_point();
    scaltra::Sgd<double> contracting(2, {.lr = 0.9});  // x ← −0.8x: the last point is best
    scaltra::KeepBest<double> best;
    scaltra::minimize(contracting, sphere, x, {.max_iterations = 5}, best);
    CHECK(best.point().isApprox(x));
    CHECK(best.loss() == Approx(2 * std::pow(0.64, 5)));

    Vec<double> y = sphere.initial_point();
    scaltra::Sgd<double> expanding(2, {.lr = 1.5});  // x ← −2x: the first point stays best
    scaltra::KeepBest<double> best2;
    scaltra::minimize(expanding, sphere, y, {.max_iterations = 4}, best2);
    CHECK(best2.point() == sphere.initial_point());
    CHECK(best2.loss() == 2.0);
}

TEST_CASE("GradientClipByNorm rescales long gradients before the step", "[train]") {
    const scaltra::problems::Sphere<double> sphere(2);
    Vec<double> x(2);
    x << 3.0, 4.0;  // gradient (6, 8), norm 10
    scaltra::Sgd<double> opt(2, {.lr = 1.0});
    scaltra::minimize(opt, sphere, x, {.max_iterations = 1}, scaltra::GradientClipByNorm(0.5));
    CHECK(x[0] == Approx(3.0 - 0.3));
    CHECK(x[1] == Approx(4.0 - 0.4));
    CHECK_THROWS_AS(scaltra::GradientClipByNorm(0), scaltra::InvalidArgument);

    // A float gradient of norm 2e30: its sum of squares overflows, and the clip
    // still scales it to norm 0.5 (it did zero it, dividing by an infinite norm).
    auto steep = [](const Eigen::Ref<const Vec<float>>& at, Eigen::Ref<Vec<float>> g) {
        g.setConstant(1e30f);
        return 1e30f * at.sum();
    };
    Vec<float> y = Vec<float>::Zero(4);
    scaltra::Sgd<float> sgd(4, {.lr = 1.0f});
    scaltra::minimize(sgd, steep, y, {.max_iterations = 1}, scaltra::GradientClipByNorm(0.5));
    CHECK(y.isApprox(Vec<float>::Constant(4, -0.25f), 1e-6f));
}

TEST_CASE("loggers write what they promise", "[train]") {
    const scaltra::problems::Sphere<double> sphere(2);
    Vec<double> x = sphere.initial_point();
    scaltra::Adam<double> opt(2, {.lr = 0.01});
    std::ostringstream printed, csv_text, bar;
    scaltra::minimize(opt, sphere, x, {.max_iterations = 20}, scaltra::PrintLoss(printed, 5),
                      scaltra::CsvLogger(csv_text, 2), scaltra::ProgressBar(bar));
    CHECK(count_lines(printed.str()) == 4);
    CHECK_THAT(printed.str(), Catch::StartsWith("step 5  loss "));
    CHECK(count_lines(csv_text.str()) == 1 + 10);
    CHECK_THAT(csv_text.str(),
               Catch::StartsWith("iteration,loss,gradient_norm,elapsed_seconds\n2,"));
    CHECK_THAT(bar.str(), Catch::Contains("100%") && Catch::Contains("it/s")
                              && Catch::Contains("ETA") && Catch::Contains("loss"));
    CHECK(bar.str().find('\r') == std::string::npos);  // a string stream is no terminal

    // Written as lines, minimize's bar has one at each tenth of the budget, and one
    // where a run stops between them.
    std::ostringstream tenths, stopped;
    x = sphere.initial_point();
    opt.reset();
    scaltra::minimize(opt, sphere, x, {.max_iterations = 20},
                      scaltra::ProgressBar(tenths, scaltra::ProgressBar::Style::lines));
    CHECK(count_lines(tenths.str()) == 10);
    CHECK_THAT(tenths.str(), Catch::StartsWith("[===") && Catch::Contains("]  10%")
                                 && Catch::EndsWith("\n") && Catch::Contains("] 100%"));
    CHECK(tenths.str().find('\r') == std::string::npos);
    x = sphere.initial_point();
    opt.reset();
    scaltra::minimize(opt, sphere, x, {.max_iterations = 20}, StopAt{5},
                      scaltra::ProgressBar(stopped, scaltra::ProgressBar::Style::lines));
    CHECK(count_lines(stopped.str()) == 2 + 1);  // 10%, 20%, then where it stopped
    CHECK_THAT(stopped.str(), Catch::EndsWith("\n") && Catch::Contains("]  25%"));

    const std::string path = "scaltra_train_test.csv";
    {
        scaltra::CsvLogger to_file(path);
        opt.reset();
        x = sphere.initial_point();
        scaltra::minimize(opt, sphere, x, {.max_iterations = 3}, to_file);
    }
    std::ifstream in(path);
    std::stringstream content;
    content << in.rdbuf();
    CHECK(count_lines(content.str()) == 4);
    std::remove(path.c_str());
    CHECK_THROWS_AS(scaltra::CsvLogger("/nonexistent-dir/x.csv"), scaltra::Error);
}
