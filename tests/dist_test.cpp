// dist/ under mpirun (ctest runs this at 2 and 3 ranks): the allreduced objective
// of a sharded batch equals the whole batch's, optimizers on it (and fit on a
// DataParallelClassifier) follow the one-process trajectory with the same
// parameters on every rank, a shard that fails makes every rank throw instead of
// leaving the others waiting, a state that differs between ranks is named,
// checkpoints resume bit-identically, and meta-training over ranks is the
// one-process meta-training bit for bit.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <scaltra/dist.hpp>
#include <scaltra/scaltra.hpp>

#include "optimizer_cases.hpp"
#include "resume_check.hpp"
#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;
using scaltra::problems::LogisticRegression;

namespace {

int rank_of_world() {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}
int ranks_of_world() {
    int ranks = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    return ranks;
}

constexpr Index kExamples = 103;  // not a multiple of 2 or 3: the shards differ in size
constexpr Index kFeatures = 12;
constexpr double kLambda = 1e-2;

/// The whole batch's data, the same on every rank (one seed).
template <class S>
std::pair<Mat<S>, Vec<S>> whole_data() {
    scaltra::Rng rng(5);
    Mat<S> X(kExamples, kFeatures);
    for (Index j = 0; j < kFeatures; ++j)
        X.col(j) = rng.normal_vector<S>(kExamples);
    const Vec<S> w_true = rng.normal_vector<S>(kFeatures);
    Vec<S> y(kExamples);
    for (Index i = 0; i < kExamples; ++i)
        y[i] = X.row(i).dot(w_true) + rng.normal() > 0 ? S(1) : S(0);
    return {std::move(X), std::move(y)};
}

template <class S>
LogisticRegression<S> whole_batch() {
    auto [X, y] = whole_data<S>();
    return LogisticRegression<S>(std::move(X), std::move(y), S(kLambda));
}

/// This rank's shard of the whole batch, rows rank, rank + P, rank + 2P, …, allreduced.
/// Each shard carries the whole (λ/2)‖w‖²: its count-weighted mean is that term again.
template <class S>
auto sharded_objective() {
    const auto [X, y] = whole_data<S>();
    const int rank = rank_of_world(), ranks = ranks_of_world();
    const Index rows = (kExamples - rank + ranks - 1) / ranks;
    Mat<S> Xr(rows, kFeatures);
    Vec<S> yr(rows);
    for (Index i = 0; i < rows; ++i) {
        Xr.row(i) = X.row(rank + i * ranks);
        yr[i] = y[rank + i * ranks];
    }
    LogisticRegression<S> local(std::move(Xr), std::move(yr), S(kLambda));
    return scaltra::dist::AllreduceObjective<S, LogisticRegression<S>>(std::move(local), rows);
}

/// Whether a holds the same bits on every rank.
template <class S>
bool same_on_every_rank(const Vec<S>& a) {
    Vec<S> least = a, largest = a;
    const auto type = scaltra::dist::detail::mpi_type<S>();
    const int n = static_cast<int>(a.size());
    MPI_Allreduce(MPI_IN_PLACE, least.data(), n, type, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, largest.data(), n, type, MPI_MAX, MPI_COMM_WORLD);
    return least == largest;
}

}  // namespace

TEST_CASE("the allreduced objective of the shards is the whole batch's", "[dist]") {
    REQUIRE(ranks_of_world() > 1);
    auto f = sharded_objective<double>();
    const auto whole = whole_batch<double>();
    const Vec<double> x = scaltra::Rng(3).normal_vector<double>(kFeatures);
    Vec<double> g(kFeatures), g_whole(kFeatures);
    const double loss = f(x, g);
    const double loss_whole = whole(x, g_whole);
    CHECK(loss == Approx(loss_whole).epsilon(1e-13));
    CHECK((g - g_whole).norm() <= 1e-13 * g_whole.norm());
    CHECK(same_on_every_rank<double>(g));
}

using DistCases = std::tuple<testing::AdamCase<double>, testing::AdamCase<float>,
                             testing::ScaltraCase<double>, testing::ScaltraCase<float>,
                             testing::LodoCase<double>, testing::LodoCase<float>>;

TEMPLATE_LIST_TEST_CASE("an optimizer on the allreduced objective follows the one-process run",
                        "[dist]", DistCases) {
    using S = typename TestType::Opt::Scalar;
    auto f = sharded_objective<S>();
    const auto whole = whole_batch<S>();
    auto opt = TestType::make(kFeatures), alone = TestType::make(kFeatures);
    Vec<S> x = Vec<S>::Zero(kFeatures), x_alone = x;
    for (int t = 0; t < 100; ++t) {
        opt.step(x, f);
        alone.step(x_alone, whole);
    }
    const double tolerance = std::is_same_v<S, float> ? 1e-5 : 1e-12;
    CHECK((x - x_alone).norm() <= tolerance * x_alone.norm());
    CHECK(same_on_every_rank<S>(x));
}

TEST_CASE("a shard that throws makes every rank throw", "[dist]") {
    const int failing = ranks_of_world() - 1;
    auto local = [&](const Eigen::Ref<const Vec<double>>& x, Eigen::Ref<Vec<double>> grad) {
        if (rank_of_world() == failing)
            throw scaltra::InvalidArgument("this shard's data is bad");
        grad = x;
        return 0.5 * x.squaredNorm();
    };
    scaltra::dist::AllreduceObjective<double, decltype(local)> f(local, 10);
    scaltra::Adam<double> opt(4);
    Vec<double> x = Vec<double>::Ones(4);
    const Vec<double> before = x;
    if (rank_of_world() == failing)
        CHECK_THROWS_AS(opt.step(x, f), scaltra::InvalidArgument);
    else
        CHECK_THROWS_WITH(opt.step(x, f), Catch::Contains("failed on 1 other rank"));
    CHECK(x == before);
}

namespace {

/// Three Gaussian blobs in 5 dimensions: 150 examples, a batch of 32 leaves a
/// last one of 22 (not a multiple of 2 or 3 either).
template <class S>
scaltra::data::LabelledSet<S> blobs(std::uint64_t seed) {
    scaltra::Rng rng(seed);
    scaltra::data::LabelledSet<S> set;
    set.inputs.resize(5, 150);
    for (Index j = 0; j < 150; ++j) {
        const Index label = j % 3;
        set.labels.push_back(label);
        for (Index i = 0; i < 5; ++i)
            set.inputs(i, j) = static_cast<S>(rng.normal() + (i == label ? 2.0 : 0.0));
    }
    return set;
}

template <class S>
scaltra::nn::Mlp<S> small_mlp() {
    return scaltra::nn::Mlp<S>({5, 8, 3}, scaltra::nn::Relu{}, 1);
}

/// The same path on every rank: rank 0's temporary directory.
std::filesystem::path shared_directory() {
    std::string path;
    if (rank_of_world() == 0) {
        path = (std::filesystem::temp_directory_path()
                / ("scaltra_dist_test_" + std::to_string(::getpid())))
                   .string();
        std::filesystem::create_directories(path);
    }
    scaltra::dist::detail::broadcast_string(path, MPI_COMM_WORLD);
    return path;
}

std::string bytes_of(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

using FitCases = std::tuple<scaltra::Adam<double>, scaltra::Adam<float>, scaltra::Scaltra<double>,
                            scaltra::Scaltra<float>, scaltra::Lodo<float>>;

TEMPLATE_LIST_TEST_CASE("fit on a DataParallelClassifier follows the one-process fit", "[dist]",
                        FitCases) {
    using S = typename TestType::Scalar;
    const auto train = blobs<S>(7), validation = blobs<S>(8);
    auto model = small_mlp<S>(), alone_model = small_mlp<S>();
    scaltra::dist::DataParallelClassifier<S, scaltra::nn::Mlp<S>> dp(model);
    TestType opt(model.layout()), alone(model.layout());
    Vec<S> w = model.init(), w_alone = w;
    const scaltra::FitOptions<S> options{
        .epochs = 3, .batch_size = 32, .seed = 4, .validation = &validation};
    const auto result = scaltra::fit(dp, opt, w, train, options);
    const auto result_alone = scaltra::fit(alone_model, alone, w_alone, train, options);
    const double tolerance = std::is_same_v<S, float> ? 1e-5 : 1e-12;
    CHECK((w - w_alone).norm() <= tolerance * w_alone.norm());
    CHECK(same_on_every_rank<S>(w));
    CHECK_NOTHROW(scaltra::dist::check_state_agreement(opt));
    REQUIRE(result.history.size() == 3);
    CHECK(result.iterations == result_alone.iterations);
    CHECK(result.history.back().metrics.validation_loss
          == Approx(result_alone.history.back().metrics.validation_loss).epsilon(1e-4));
}

TEST_CASE("APO's function-space term on a DataParallelClassifier is shared out like the loss",
          "[dist]") {
    const auto train = blobs<float>(7);
    auto model = small_mlp<float>(), alone_model = small_mlp<float>();
    scaltra::dist::DataParallelClassifier<float, scaltra::nn::Mlp<float>> dp(model);
    scaltra::ApoOptions<float, scaltra::SgdOptions<float>> options;
    options.lambda_fsd = 0.3f;
    options.interval = 2;
    scaltra::Apo<float> opt(model.layout(), options), alone(model.layout(), options);
    Vec<float> w = model.init(), w_alone = w;
    const scaltra::FitOptions<float> fit_options{.epochs = 2, .batch_size = 32, .seed = 4};
    scaltra::fit(dp, opt, w, train, fit_options);
    scaltra::fit(alone_model, alone, w_alone, train, fit_options);
    CHECK((w - w_alone).norm() <= 1e-5 * w_alone.norm());
    CHECK((opt.state().phi - alone.state().phi).norm() <= 1e-5 * alone.state().phi.norm());
    CHECK(same_on_every_rank<float>(w));
    CHECK(same_on_every_rank<float>(opt.state().phi));
}

TEST_CASE("a state that differs between ranks is named, by the check and by the callback",
          "[dist]") {
    const int last = ranks_of_world() - 1;
    const auto train = blobs<double>(7);
    auto model = small_mlp<double>();
    scaltra::dist::DataParallelClassifier<double, scaltra::nn::Mlp<double>> dp(model);
    scaltra::Scaltra<double> opt(model.layout());
    Vec<double> w = model.init();
    scaltra::fit(dp, opt, w, train, {.epochs = 1, .batch_size = 32});
    CHECK_NOTHROW(scaltra::dist::check_state_agreement(opt));

    SECTION("φ's second block one ulp off on the last rank") {
        const scaltra::Block block = opt.meta_layout()[1];
        if (rank_of_world() == last) {
            auto state = opt.state();
            state.phi[block.offset] = std::nextafter(state.phi[block.offset], 1e300);
            opt.set_state(state);
        }
        try {
            scaltra::dist::check_state_agreement(opt);
            FAIL("no divergence reported");
        } catch (const scaltra::dist::StateDivergence& e) {
            CHECK(e.block() == "phi[" + block.name + "]");
            CHECK_THAT(e.what(), Catch::Contains("rank(s) " + std::to_string(last)
                                                 + " differ from rank 0"));
        }
    }
    SECTION("the step count") {
        if (rank_of_world() == last) {
            auto state = opt.state();
            state.step += 1;
            opt.set_state(state);
        }
        try {
            scaltra::dist::check_state_agreement(opt);
            FAIL("no divergence reported");
        } catch (const scaltra::dist::StateDivergence& e) {
            CHECK(e.block() == "step");
        }
    }
    SECTION("LODO seeded apart on the last rank: StateAgreement stops fit at its check") {
        scaltra::LodoOptions<double> options;
        options.seed = rank_of_world() == last ? 2 : 1;
        scaltra::Lodo<double> lodo(model.layout(), options);
        Vec<double> u = model.init();
        std::int64_t steps = 0;
        struct Counter {
            std::int64_t* steps;
            void on_step(const scaltra::Lodo<double>&, const scaltra::Progress<double>& p,
                         const Eigen::Ref<const Vec<double>>&) {
                *steps = p.iteration;
            }
        };
        try {
            scaltra::fit(dp, lodo, u, train, {.epochs = 1, .batch_size = 32}, Counter{&steps},
                         scaltra::dist::StateAgreement(3));
            FAIL("no divergence reported");
        } catch (const scaltra::dist::StateDivergence& e) {
            CHECK(e.block().starts_with("phi["));  // its permutations steer φ apart
        }
        CHECK(steps == 3);
        // Checked at the end too: every = 1000 is never reached in one epoch's 5 steps.
        CHECK_THROWS_AS(scaltra::fit(dp, lodo, u, train, {.epochs = 1, .batch_size = 32},
                                     scaltra::dist::StateAgreement(1000)),
                        scaltra::dist::StateDivergence);
    }
}

TEST_CASE("checkpoints under MPI: rank 0 writes, every rank loads, the resumed run is the same",
          "[dist]") {
    const auto directory = shared_directory();
    const auto path = directory / "run.ckpt";
    const auto train = blobs<float>(7);
    auto model = small_mlp<float>();
    scaltra::dist::DataParallelClassifier<float, scaltra::nn::Mlp<float>> dp(model);
    const scaltra::FitOptions<float> options{.epochs = 3, .batch_size = 32, .seed = 4};

    scaltra::Scaltra<float> whole(model.layout());
    Vec<float> w_whole = model.init();
    scaltra::fit(dp, whole, w_whole, train, options);

    scaltra::Scaltra<float> first(model.layout());
    Vec<float> w_first = model.init();
    auto partial = options;
    partial.epochs = 2;
    scaltra::fit(dp, first, w_first, train, partial, scaltra::dist::Checkpoint(path));
    if (rank_of_world() == 0)
        CHECK(std::filesystem::exists(path));

    scaltra::Scaltra<float> resumed(model.layout());
    Vec<float> w = Vec<float>::Zero(w_whole.size());
    const auto info = scaltra::dist::load_checkpoint(path, resumed, w);
    CHECK(info.epoch == 2);
    auto rest = options;
    rest.initial_epoch = info.epoch;
    scaltra::fit(dp, resumed, w, train, rest);
    CHECK(testing::bitwise_equal(w, w_whole));
    CHECK(scaltra::bitwise_equal(resumed.state(), whole.state()));

    SECTION("a missing or corrupt file raises the same error on every rank, nothing changes") {
        const Vec<float> before = w;
        CHECK_THROWS_AS(scaltra::dist::load_checkpoint(directory / "none", resumed, w),
                        scaltra::MissingData);
        if (rank_of_world() == 0) {
            const std::string good = bytes_of(path);
            std::ofstream(path, std::ios::binary | std::ios::trunc)
                << good.substr(0, good.size() / 2);
        }
        CHECK_THROWS_AS(scaltra::dist::load_checkpoint(path, resumed, w), scaltra::CorruptState);
        CHECK(testing::bitwise_equal(w, before));
        CHECK(scaltra::bitwise_equal(resumed.state(), whole.state()));
    }
    SECTION("ranks that disagree are refused before anything is written") {
        const std::string good = rank_of_world() == 0 ? bytes_of(path) : std::string();
        Vec<float> w_odd = w;
        if (rank_of_world() == ranks_of_world() - 1)
            w_odd[0] += 1;
        try {
            scaltra::dist::save_checkpoint(path, resumed, w_odd, {3, info.iteration});
            FAIL("no divergence reported");
        } catch (const scaltra::dist::StateDivergence& e) {
            CHECK(e.block() == "parameters");
        }
        if (rank_of_world() == 0)
            CHECK(bytes_of(path) == good);
    }
    SECTION("rank 0 failing to write raises on every rank") {
        const auto unwritable = directory / "no such directory" / "run.ckpt";
        if (rank_of_world() == 0)
            CHECK_THROWS_WITH(scaltra::dist::save_checkpoint(unwritable, resumed, w, {3, 1}),
                              Catch::Contains("cannot open"));
        else
            CHECK_THROWS_WITH(scaltra::dist::save_checkpoint(unwritable, resumed, w, {3, 1}),
                              Catch::StartsWith("rank 0: ") && Catch::Contains("cannot open"));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_of_world() == 0)
        std::filesystem::remove_all(directory);
}

namespace {

/// A least-squares task that throws on one rank when `fails`.
struct FlakyTask {
    scaltra::data::LeastSquaresTask<double> task;
    bool fails = false;
    double train_loss(const Eigen::Ref<const Vec<double>>& x, Eigen::Ref<Vec<double>> g) {
        if (fails)
            throw scaltra::InvalidArgument("this task's data is bad");
        return task.train_loss(x, g);
    }
    double validation_loss(const Eigen::Ref<const Vec<double>>& x, Eigen::Ref<Vec<double>> g) {
        return task.validation_loss(x, g);
    }
    const Vec<double>& initial_point() const { return task.start; }
};

std::vector<scaltra::data::LeastSquaresTask<double>> least_squares(int count) {
    scaltra::Rng rng(17);
    std::vector<scaltra::data::LeastSquaresTask<double>> tasks;
    for (int i = 0; i < count; ++i)
        tasks.push_back(scaltra::data::least_squares_task<double>(rng, 8, 6));
    return tasks;
}

}  // namespace

TEST_CASE("meta-training over ranks is the one-process meta-training bit for bit", "[dist]") {
    auto tasks = least_squares(7);
    const scaltra::dist::TaskShards shards;
    for (std::int64_t batch : {0, 3}) {
        scaltra::Dcom<double> alone(6, {.lr = 0.01}), shared(6, {.lr = 0.01});
        scaltra::MetaTrainOptions options{
            .epochs = 4, .inner_steps = 3, .task_batch = batch, .seed = 9, .threads = 1};
        const auto result_alone = scaltra::meta_train(alone, tasks, options);
        options.distribution = &shards;
        const auto result = scaltra::meta_train(shared, tasks, options);
        CHECK(testing::bitwise_equal(shared.state().phi, alone.state().phi));
        CHECK(result.loss == result_alone.loss);
        CHECK(same_on_every_rank<double>(shared.state().phi));
    }
    SECTION("DCOGD: its meta-gradient is a matrix product") {
        scaltra::Dcogd<double> alone(6, {.lr = 0.01}), shared(6, {.lr = 0.01});
        scaltra::meta_train(alone, tasks, {.epochs = 3, .inner_steps = 2});
        scaltra::meta_train(shared, tasks,
                            {.epochs = 3, .inner_steps = 2, .distribution = &shards});
        CHECK(testing::bitwise_equal(shared.state().phi, alone.state().phi));
    }
    SECTION("a task that throws on one rank makes every rank throw") {
        std::vector<FlakyTask> flaky;
        for (auto& t : tasks)
            flaky.push_back({t, false});
        flaky.back().fails = true;  // the last rank's share
        scaltra::Dcom<double> opt(6, {.lr = 0.01});
        const auto before = opt.state();
        if (rank_of_world() == ranks_of_world() - 1)
            CHECK_THROWS_AS(scaltra::meta_train(opt, flaky, {.distribution = &shards}),
                            scaltra::InvalidArgument);
        else
            CHECK_THROWS_WITH(scaltra::meta_train(opt, flaky, {.distribution = &shards}),
                              Catch::Contains("rank " + std::to_string(ranks_of_world() - 1)
                                              + " failed on its tasks ["));
        CHECK(scaltra::bitwise_equal(opt.state(), before));
    }
}

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    const int failed = Catch::Session().run(argc, argv);
    int any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any_failed;
}
