// DCO: the QP layer against central differences (D2), the three optimizers
// against their classical counterparts (D1) and the QP layer on the tape, exact
// meta-gradients through T = 1, 2, 5 inner steps against central differences of
// the meta-loss, Theorem 1 (D3), DCOM's M at T = 1, and meta_train's contract:
// threads, batches, callbacks, bad input, the non-finite policy, save/load.
#include <cmath>
#include <deque>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <scaltra/autodiff.hpp>
#include <scaltra/data/synthetic.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>
#include <scaltra/train.hpp>

#include <Eigen/Eigenvalues>

#include "cross_optimizer_suites.hpp"
#include "resume_check.hpp"
#include <catch2/catch.hpp>

namespace ad = scaltra::ad;
using scaltra::Index;
using scaltra::Mat;
using scaltra::NonFinitePolicy;
using scaltra::Vec;

namespace {

/// φ replaced in opt's state (the meta-optimizer's state kept).
template <class Opt>
void set_phi(Opt& opt, const Vec<typename Opt::Scalar>& phi) {
    auto state = opt.state();
    state.phi = phi;
    opt.set_state(std::move(state));
}

/// The largest |closed form − central difference| / max(1, |fd|) of the meta-loss
/// mean_i l_val,i(θ_T) with respect to φ, over every element of φ.
template <class Opt, class Tasks>
double meta_gradient_error(Opt& opt, Tasks& tasks, Index steps) {
    std::vector<typename Opt::Workspace> ws;
    for (std::size_t i = 0; i < tasks.size(); ++i)
        ws.push_back(opt.workspace(steps));
    const Vec<double> phi0 = opt.state().phi;
    Vec<double> h = Vec<double>::Zero(phi0.size());
    const double w = 1.0 / static_cast<double>(tasks.size());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
        opt.meta_gradient(tasks[i], ws[i]);
        opt.add_meta_gradient(ws[i], w, h);
    }
    auto loss_at = [&](const Vec<double>& phi) {
        set_phi(opt, phi);
        double total = 0;
        for (std::size_t i = 0; i < tasks.size(); ++i)
            total += w * opt.unrolled_loss(tasks[i], ws[i]);
        return total;
    };
    double worst = 0;
    for (Index k = 0; k < phi0.size(); ++k) {
        Vec<double> phi = phi0;
        const double e = 1e-6 * std::max(1.0, std::abs(phi0[k]));
        phi[k] = phi0[k] + e;
        const double up = loss_at(phi);
        phi[k] = phi0[k] - e;
        const double down = loss_at(phi);
        const double fd = (up - down) / (2 * e);
        worst = std::max(worst, std::abs(h[k] - fd) / std::max(1.0, std::abs(fd)));
    }
    set_phi(opt, phi0);
    return worst;
}

/// Small least-squares tasks (X 8×6) started away from 0.
std::vector<scaltra::data::LeastSquaresTask<double>> small_least_squares(int count) {
    scaltra::Rng rng(11);
    std::vector<scaltra::data::LeastSquaresTask<double>> tasks;
    for (int i = 0; i < count; ++i) {
        auto task = scaltra::data::least_squares_task<double>(rng, 8, 6);
        task.start = rng.normal_vector<double>(6);
        tasks.push_back(task);
    }
    return tasks;
}

/// Beverton–Holt tasks on a 1-3-3-1 tanh network, 40 training points.
std::deque<scaltra::MlpRegressionTask<double>> small_regressions(int count) {
    scaltra::Rng rng(5);
    std::deque<scaltra::MlpRegressionTask<double>> tasks;
    for (int i = 0; i < count; ++i)
        tasks.emplace_back(scaltra::data::beverton_holt_task<double>(rng, 40, 20),
                           std::vector<Index>{1, 3, 3, 1}, scaltra::nn::Activation::tanh, 3);
    return tasks;
}

/// φ moved away from its start so that no derivative is trivially symmetric.
template <class Opt>
void perturb_phi(Opt& opt, double size, std::uint64_t seed) {
    scaltra::Rng rng(seed);
    set_phi(opt, Vec<double>(opt.state().phi
                             + size * rng.normal_vector<double>(opt.state().phi.size())));
}

}  // namespace

TEMPLATE_TEST_CASE("D2: the QP layer's derivatives equal central differences", "[dco][autodiff]",
                   float, double) {
    using S = TestType;
    scaltra::Rng rng(3);
    const double tolerance = std::is_same_v<S, float> ? 2e-2 : 1e-6;
    const Mat<double> A = Mat<double>::NullaryExpr(4, 4, [&] { return rng.normal(); });
    const Mat<double> q = Mat<double>::NullaryExpr(4, 2, [&] { return rng.normal(); });
    const Mat<double> c = Mat<double>::NullaryExpr(4, 2, [&] { return rng.normal(); });
    // Q = AAᵀ + I (symmetric positive definite, through its factor A); ℓ = ⟨c, y*⟩ + ‖y*‖².
    auto full = [&](auto leaves) {
        using T = typename std::remove_cvref_t<decltype(leaves[0])>::Scalar;
        auto& t = leaves[0].tape();
        const auto Q = ad::matmul(leaves[0], leaves[0], false, true)
                       + t.constant(Mat<T>::Identity(4, 4));
        const auto y = ad::qp_solve(Q, leaves[1]);
        return ad::dot(t.constant(c.cast<T>()), y) + ad::squared_norm(y);
    };
    CHECK(ad::gradient_error<S>(full, {A, q}) < tolerance);
    // Q = diag(softplus(u)).
    const Mat<double> u = Mat<double>::NullaryExpr(4, 1, [&] { return rng.normal(); });
    auto diagonal = [&](auto leaves) {
        using T = typename std::remove_cvref_t<decltype(leaves[0])>::Scalar;
        auto& t = leaves[0].tape();
        const auto y = ad::qp_solve_diagonal(ad::softplus(leaves[0]), leaves[1]);
        return ad::dot(t.constant(c.cast<T>()), y) + ad::squared_norm(y);
    };
    CHECK(ad::gradient_error<S>(diagonal, {u, q}) < tolerance);

    SECTION("the forward pass is the minimiser, and bad programs are refused") {
        ad::Tape<double> t;
        const Mat<double> Q = A * A.transpose() + Mat<double>::Identity(4, 4);
        const auto y = ad::qp_solve(t.constant(Q), t.constant(q));
        CHECK((Q * y.value() + q).norm() < 1e-12);  // KKT: Qy* + q = 0
        const Vec<double> d = Vec<double>::Constant(4, 2.0);
        CHECK(ad::qp_solve_diagonal(t.constant(d), t.constant(q)).value().isApprox(-q / 2.0));
        CHECK_THROWS_AS(ad::qp_solve(t.constant(Mat<double>(-Q)), t.constant(q)),
                        scaltra::InvalidArgument);
        Vec<double> zero = d;
        zero[2] = 0;
        CHECK_THROWS_WITH(ad::qp_solve_diagonal(t.constant(zero), t.constant(q)),
                          Catch::Contains("d[2]"));
        CHECK_THROWS_AS(ad::qp_solve(t.constant(Q), t.constant(Mat<double>::Ones(3, 1))),
                        scaltra::DimensionMismatch);
        CHECK_THROWS_AS(ad::qp_solve_diagonal(t.constant(d), t.constant(Mat<double>::Ones(3, 1))),
                        scaltra::DimensionMismatch);
    }
}

TEMPLATE_TEST_CASE("D1: DCOG, DCOGD and DCOM at their start are GD and EMA momentum",
                   "[dco]", float, double) {
    using S = TestType;
    constexpr Index n = 12;
    const scaltra::problems::IllConditionedQuadratic<S> f(n, 50.0, 4);
    const Vec<S> x0 = f.initial_point();
    const S eta = S(0.3), beta = S(0.8);
    auto run = [&](auto opt) {
        Vec<S> x = x0;
        for (int t = 0; t < 25; ++t)
            opt.step(x, f);
        return x;
    };
    const Vec<S> gd = run(scaltra::Sgd<S>(n, {.lr = eta}));
    CHECK(testing::bitwise_equal(run(scaltra::Dcog<S>(n, {.lr = eta, .normalize_gradient = false})),
                                 gd));
    CHECK(testing::bitwise_equal(run(scaltra::Dcogd<S>(n, {.lr = eta, .normalize_gradient = false})),
                                 gd));
    // torch's SGD(momentum = β, dampening = β): b₁ = g₁, b ← βb + (1 − β)g. M = 1 − β and
    // 1 − M = β round differently, so this agreement is to rounding.
    const Vec<S> ema = run(scaltra::Sgd<S>(n, {.lr = eta, .momentum = beta, .dampening = beta}));
    const Vec<S> dcom =
        run(scaltra::Dcom<S>(n, {.lr = eta, .momentum = beta, .normalize_gradient = false}));
    CHECK((dcom - ema).norm() <= S(std::is_same_v<S, float> ? 1e-5 : 1e-13) * ema.norm());

    SECTION("with normalised gradients, DCOG is x ← x − η g/‖g‖") {
        scaltra::Dcog<S> opt(n, {.lr = eta});
        Vec<S> x = x0, y = x0, g(n);
        for (int t = 0; t < 10; ++t) {
            opt.step(x, f);
            f(y, g);
            y -= (eta / g.norm()) * g;
        }
        CHECK((x - y).norm() <= S(1e-5) * y.norm());
    }
}

TEST_CASE("the README's rule of your own: its gradient in φ equals central differences",
          "[dco][autodiff]") {
    scaltra::Rng rng(6);
    const Vec<double> g = rng.normal_vector<double>(5), x = rng.normal_vector<double>(5),
                      target = rng.normal_vector<double>(5);
    // Λ² = softplus(φ₁) + softplus(φ₂)|G|, θ⁺ = argmin Gᵀθ + ½‖Λ⊙(θ − x)‖², ℓ = ‖θ⁺ − target‖².
    auto rule = [&](auto phi) {
        using T = typename std::remove_cvref_t<decltype(phi[0])>::Scalar;
        auto& t = phi[0].tape();
        const auto G = t.constant(g.cast<T>()), theta = t.constant(x.cast<T>());
        const auto lambda2 = ad::softplus(phi[0])
                             + ad::mul(ad::softplus(phi[1]), t.constant(g.cwiseAbs().cast<T>()));
        const auto next = ad::qp_solve_diagonal(lambda2, G - ad::mul(lambda2, theta));
        return ad::squared_norm(next - t.constant(target.cast<T>()));
    };
    CHECK(ad::gradient_error<double>(rule, {rng.normal_vector<double>(5),
                                            rng.normal_vector<double>(5)}) < 1e-6);
}

TEST_CASE("D2: each closed-form step is the QP layer's minimiser", "[dco]") {
    scaltra::Rng rng(8);
    constexpr Index n = 5;
    const Vec<double> theta = rng.normal_vector<double>(n), g = rng.normal_vector<double>(n);
    ad::Tape<double> t;
    scaltra::Dcog<double> dcog(n, {.normalize_gradient = false});
    perturb_phi(dcog, 0.3, 1);
    // DCOG: Q = diag(Λ²), q = G − Λ²⊙θ.
    const Vec<double> lambda2 = dcog.lr().cwiseInverse();
    const auto y = ad::qp_solve_diagonal(
        t.constant(lambda2), t.constant(Vec<double>(g - lambda2.cwiseProduct(theta))));
    Vec<double> x = theta;
    dcog.update(x, g);
    CHECK((x - y.value()).norm() < 1e-12);
    // DCOGD: Q = I, q = BG − θ.
    scaltra::Dcogd<double> dcogd(n, {.normalize_gradient = false});
    perturb_phi(dcogd, 0.3, 2);
    const Mat<double> B = dcogd.matrix();
    const auto y2 = ad::qp_solve(t.constant(Mat<double>::Identity(n, n)),
                                 t.constant(Vec<double>(B * g - theta)));
    x = theta;
    dcogd.update(x, g);
    CHECK((x - y2.value()).norm() < 1e-12);
    // DCOM, second step: Q = diag(Λ²), q = S⁺ − Λ²⊙θ with S⁺ = M⊙G + (1 − M)⊙S.
    scaltra::Dcom<double> dcom(n, {.normalize_gradient = false});
    perturb_phi(dcom, 0.3, 3);
    const Vec<double> g2 = rng.normal_vector<double>(n);
    x = theta;
    dcom.update(x, g);  // S = G
    const Vec<double> M = dcom.mix();
    const Vec<double> s_next = M.cwiseProduct(g2) + (Vec<double>::Ones(n) - M).cwiseProduct(g);
    const Vec<double> l2 = dcom.lr().cwiseInverse();
    const Vec<double> x1 = x;
    const auto y3 = ad::qp_solve_diagonal(t.constant(l2),
                                          t.constant(Vec<double>(s_next - l2.cwiseProduct(x1))));
    dcom.update(x, g2);
    CHECK((x - y3.value()).norm() < 1e-12);
}

TEST_CASE("meta-gradients through T = 1, 2 and 5 steps equal central differences", "[dco]") {
    auto ls = small_least_squares(3);
    auto nets = small_regressions(2);
    for (bool normalize : {false, true}) {
        for (Index steps : {1, 2, 5}) {
            INFO("normalize " << normalize << ", T = " << steps);
            // Rates small enough that T steps stay near the data.
            scaltra::Dcog<double> dcog(6, {.lr = 0.01, .normalize_gradient = normalize});
            perturb_phi(dcog, 0.2, 1);
            CHECK(meta_gradient_error(dcog, ls, steps) < 1e-6);
            scaltra::Dcom<double> dcom(6, {.lr = 0.01, .momentum = 0.6,
                                           .normalize_gradient = normalize});
            perturb_phi(dcom, 0.2, 2);
            CHECK(meta_gradient_error(dcom, ls, steps) < 1e-6);
            scaltra::Dcogd<double> dcogd(6, {.lr = 0.01, .normalize_gradient = normalize});
            perturb_phi(dcogd, 0.002, 3);
            CHECK(meta_gradient_error(dcogd, ls, steps) < 1e-6);

            const Index p = nets[0].layout().size();
            scaltra::Dcom<double> net(p, {.lr = 0.1, .momentum = 0.5,
                                          .normalize_gradient = normalize});
            perturb_phi(net, 0.2, 4);
            CHECK(meta_gradient_error(net, nets, steps) < 1e-6);
            scaltra::Dcogd<double> net_b(p, {.lr = 0.1, .normalize_gradient = normalize});
            perturb_phi(net_b, 0.01, 5);
            CHECK(meta_gradient_error(net_b, nets, steps) < 1e-6);
        }
    }
}

TEST_CASE("the MLP's Hessian-vector product equals central differences of its gradient",
          "[dco][nn]") {
    auto nets = small_regressions(1);
    auto& task = nets[0];
    scaltra::Rng rng(2);
    const Index p = task.layout().size();
    const Vec<double> w = task.initial_point() + 0.3 * rng.normal_vector<double>(p);
    const Vec<double> v = rng.normal_vector<double>(p);
    Vec<double> hv(p), up(p), down(p);
    task.hessian_vector_product(w, v, hv);
    const double e = 1e-5;
    up.setZero();
    down.setZero();
    task.train_loss(w + e * v, up);
    task.train_loss(w - e * v, down);
    const Vec<double> fd = (up - down) / (2 * e);
    CHECK((hv - fd).norm() < 1e-7 * (1 + fd.norm()));
}

TEST_CASE("DCOM's M gets no meta-gradient at T = 1 and a non-zero one at T = 2", "[dco]") {
    auto ls = small_least_squares(3);
    scaltra::Dcom<double> opt(6, {.lr = 0.01, .normalize_gradient = false});
    for (Index steps : {1, 2}) {
        auto ws = opt.workspace(steps);
        Vec<double> h = Vec<double>::Zero(12);
        opt.meta_gradient(ls[0], ws);
        opt.add_meta_gradient(ws, 1.0, h);
        if (steps == 1)
            CHECK(h.tail(6).isZero(0.0));
        else
            CHECK(h.tail(6).norm() > 1e-3);
        CHECK(h.head(6).norm() > 1e-3);
    }
}

TEST_CASE("D3 (Theorem 1): on shifted least squares DCOGD learns B = ½(XᵀX)⁻¹", "[dco]") {
    // X 40×10, well conditioned; N = 30 ≥ p tasks; T = 1, no normalisation, meta-GD.
    scaltra::Rng rng(21);
    const Index rows = 40, p = 10;
    const Mat<double> X = Mat<double>::NullaryExpr(rows, p, [&] { return rng.normal(); });
    const Vec<double> y = rng.normal_vector<double>(rows);
    std::vector<scaltra::data::LeastSquaresTask<double>> tasks;
    for (int i = 0; i < 30; ++i)
        tasks.push_back(scaltra::data::shifted_least_squares_task<double>(rng, X, y));
    // The meta-loss is quadratic in B with Hessian (2/N)Σ gᵢgᵢᵀ ⊗ XᵀX: meta-GD at 1/λ_max.
    const Mat<double> XtX = X.transpose() * X;
    Mat<double> GGt = Mat<double>::Zero(p, p);
    Vec<double> g(p);
    for (auto& task : tasks) {
        task.train_loss(task.start, g);
        GGt += g * g.transpose() / 30.0;
    }
    const double lambda_max = 2 * Eigen::SelfAdjointEigenSolver<Mat<double>>(GGt).eigenvalues().maxCoeff()
                              * Eigen::SelfAdjointEigenSolver<Mat<double>>(XtX).eigenvalues().maxCoeff();
    scaltra::Dcogd<double, scaltra::Sgd<double>> opt(
        p, {.lr = 1e-3, .normalize_gradient = false, .meta = {.lr = 1.0 / lambda_max}});
    const auto result = scaltra::meta_train(opt, tasks, {.epochs = 20000});
    const Mat<double> target = 0.5 * XtX.inverse();
    INFO("meta-loss " << result.loss << ", B error " << (opt.matrix() - target).norm());
    CHECK((opt.matrix() - target).norm() < 1e-6 * target.norm());
    // A new task is solved in one inner step.
    auto fresh = scaltra::data::shifted_least_squares_task<double>(rng, X, y);
    Vec<double> theta = fresh.start;
    opt.restart();
    opt.step(theta, fresh);
    const double optimum = fresh(fresh.solution(), g);
    CHECK(fresh(theta, g) - optimum < 1e-8);
}

TEST_CASE("meta_train: bit-identical for any thread count, with and without task batches",
          "[dco]") {
    auto ls = small_least_squares(7);
    auto train = [&](int threads, std::int64_t batch) {
        scaltra::Dcom<double> opt(6, {.lr = 0.01});
        scaltra::meta_train(opt, ls,
                            {.epochs = 4, .inner_steps = 3, .task_batch = batch, .seed = 9,
                             .threads = threads});
        return Vec<double>(opt.state().phi);
    };
    CHECK(testing::bitwise_equal(train(1, 0), train(2, 0)));
    CHECK(testing::bitwise_equal(train(1, 3), train(3, 3)));
    CHECK_FALSE(testing::bitwise_equal(train(1, 0), train(1, 3)));

    SECTION("meta-training lowers the meta-loss, and the callbacks see every meta-step") {
        auto nets = small_regressions(4);
        scaltra::Dcog<double> opt(nets[0].layout(), {.lr = 0.05});
        std::ostringstream csv;
        scaltra::CsvLogger log(csv);
        const auto before = scaltra::meta_train(opt, nets, {.epochs = 1, .inner_steps = 5});
        const auto after =
            scaltra::meta_train(opt, nets, {.epochs = 30, .inner_steps = 5, .task_batch = 2}, log);
        CHECK(after.loss < before.loss);
        CHECK(after.iterations == 60);
        CHECK(after.status == scaltra::Status::max_iterations);
        std::istringstream lines(csv.str());
        std::string line;
        int rows = 0;
        std::getline(lines, line);
        CHECK(line == "iteration,loss,gradient_norm,elapsed_seconds,lr_mean,lr_min,lr_max");
        while (std::getline(lines, line))
            ++rows;
        CHECK(rows == 60);
    }
}

TEST_CASE("meta_train refuses bad input and keeps what was learned", "[dco]") {
    auto ls = small_least_squares(3);
    scaltra::Dcog<double> opt(6, {.lr = 0.01});
    scaltra::meta_train(opt, ls, {.epochs = 3});
    const auto learned = opt.state();
    auto unchanged = [&] { return scaltra::bitwise_equal(opt.state(), learned); };

    std::vector<scaltra::data::LeastSquaresTask<double>> none;
    CHECK_THROWS_WITH(scaltra::meta_train(opt, none, {}), Catch::Contains("empty"));
    CHECK_THROWS_WITH(scaltra::meta_train(opt, ls, {.inner_steps = 0}),
                      Catch::Contains("inner_steps"));
    CHECK_THROWS_WITH(scaltra::meta_train(opt, ls, {.epochs = 0}), Catch::Contains("epochs"));
    auto mixed = ls;
    scaltra::Rng rng(1);
    mixed.push_back(scaltra::data::least_squares_task<double>(rng, 8, 5));
    CHECK_THROWS_AS(scaltra::meta_train(opt, mixed, {}), scaltra::DimensionMismatch);
    CHECK(unchanged());

    // A task without Hessian-vector products is meta-trained at T = 1 only.
    struct FirstOrder {
        scaltra::data::LeastSquaresTask<double> task;
        double train_loss(const Eigen::Ref<const Vec<double>>& x, Eigen::Ref<Vec<double>> g) {
            return task(x, g);
        }
        double validation_loss(const Eigen::Ref<const Vec<double>>& x, Eigen::Ref<Vec<double>> g) {
            return task(x, g);
        }
        const Vec<double>& initial_point() const { return task.start; }
    };
    static_assert(scaltra::MetaTask<FirstOrder, double>);
    static_assert(!scaltra::SecondOrderTask<FirstOrder, double>);
    std::vector<FirstOrder> first_order{{ls[0]}, {ls[1]}};
    CHECK_THROWS_WITH(scaltra::meta_train(opt, first_order, {.inner_steps = 2}),
                      Catch::Contains("hessian_vector_product"));
    CHECK(unchanged());
    scaltra::Dcog<double> fresh(6, {.lr = 0.01});
    CHECK(scaltra::meta_train(fresh, first_order, {.epochs = 2}).iterations == 2);

    SECTION("a non-finite meta-loss ends the run under raise, is skipped under skip") {
        struct Poisoned : FirstOrder {
            double validation_loss(const Eigen::Ref<const Vec<double>>& x,
                                   Eigen::Ref<Vec<double>> g) {
                task(x, g);
                return std::numeric_limits<double>::quiet_NaN();
            }
        };
        std::vector<Poisoned> poisoned{{{ls[0]}}};
        CHECK(scaltra::meta_train(opt, poisoned, {.epochs = 2}).status
              == scaltra::Status::non_finite);
        CHECK(unchanged());
        scaltra::Dcog<double> skipping(6, {.lr = 0.01, .on_non_finite = NonFinitePolicy::skip});
        const auto start = skipping.state();
        const auto result = scaltra::meta_train(skipping, poisoned, {.epochs = 3});
        CHECK(result.skipped_steps == 3);
        CHECK(result.status == scaltra::Status::max_iterations);
        CHECK(scaltra::bitwise_equal(skipping.state(), start));
        CHECK_THROWS_AS(opt.meta_update(Vec<double>::Constant(6, NAN)), scaltra::NonFinite);
        CHECK(unchanged());
    }
}

TEST_CASE("add_meta_gradient refuses a meta-gradient of the wrong size and another's workspace",
          "[dco]") {
    auto ls = small_least_squares(1);
    scaltra::Dcogd<double> opt(6, {});
    auto ws = opt.workspace(2);
    opt.meta_gradient(ls[0], ws);
    const Index size = opt.state().phi.size();
    REQUIRE(size == 36);
    Vec<double> h = Vec<double>::Zero(size);
    Vec<double> short_h = Vec<double>::Zero(6);  // n, not n²: DCOGD would write past it
    CHECK_THROWS_AS(opt.add_meta_gradient(ws, 1.0, short_h), scaltra::DimensionMismatch);
    CHECK(short_h.isZero(0));
    scaltra::Dcogd<double> larger(8, {});
    Vec<double> h8 = Vec<double>::Zero(64);
    CHECK_THROWS_WITH(larger.add_meta_gradient(ws, 1.0, h8),
                      Catch::Contains("a workspace for 6 parameters"));
    CHECK_THROWS_WITH(opt.add_meta_gradient(ws, NAN, h), Catch::Contains("weight"));
    CHECK(h.isZero(0));
    opt.add_meta_gradient(ws, 1.0, h);
    CHECK(!h.isZero(0));
}

TEST_CASE("DCO's learned state saves, loads and resumes, restart keeps it, and DCOGD's size "
          "is limited",
          "[dco]") {
    auto ls = small_least_squares(4);
    scaltra::Dcom<float> a(6, {.lr = 0.01f});
    std::vector<scaltra::data::LeastSquaresTask<float>> tasks;
    for (const auto& t : ls)
        tasks.push_back({t.X.cast<float>(), t.y.cast<float>(), t.start.cast<float>()});
    scaltra::meta_train(a, tasks, {.epochs = 5, .inner_steps = 2});
    const Vec<float> learned = a.state().phi;
    CHECK_FALSE(learned.isApprox(scaltra::Dcom<float>(6, {.lr = 0.01f}).state().phi));
    scaltra::Dcom<float> b(6, {.lr = 0.01f});
    Vec<float> x = tasks[0].start;
    for (int t = 0; t < 3; ++t)
        a.step(x, tasks[0]);
    testing::check_resumes_bit_identically(a, b, tasks[0], x, 5);
    CHECK(a.lr() == b.lr());  // the rates derived from φ are restored with it
    // Meta-training resumes with the meta-optimizer's state.
    scaltra::meta_train(a, tasks, {.epochs = 2, .inner_steps = 2});
    scaltra::meta_train(b, tasks, {.epochs = 2, .inner_steps = 2});
    CHECK(scaltra::bitwise_equal(a.state(), b.state()));

    a.restart();
    CHECK(a.state().step == 0);
    CHECK(testing::bitwise_equal(Vec<float>(a.state().phi), Vec<float>(b.state().phi)));
    a.reset();
    CHECK(scaltra::bitwise_equal(a.state(), scaltra::Dcom<float>(6, {.lr = 0.01f}).state()));

    CHECK_THROWS_WITH(scaltra::Dcogd<float>(3000), Catch::Contains("max_size"));
    CHECK_NOTHROW(scaltra::Dcogd<float>(3000, {.max_size = 3000}));
    CHECK_THROWS_WITH(scaltra::Dcom<float>(3, {.momentum = 1}), Catch::Contains("momentum"));
}

// The suites every optimizer passes, and the learned optimizers' (φ's blocks), over
// DCOG, DCOM and DCOGD in float and double.
SCALTRA_CROSS_OPTIMIZER_SUITES(testing::DcoCases)
SCALTRA_PHI_BLOCKS_SUITE(testing::DcoCases)
