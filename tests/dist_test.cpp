// dist/ under mpirun (ctest runs this at 2 and 3 ranks): the allreduced objective
// of a sharded batch equals the whole batch's, optimizers on it follow the
// one-process trajectory with the same parameters on every rank, and a shard that
// fails makes every rank throw instead of leaving the others waiting.
#define CATCH_CONFIG_RUNNER
#include <mpi.h>

#include <tuple>
#include <type_traits>
#include <utility>

#include <scaltra/dist/data_parallel.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include "optimizer_cases.hpp"
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

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    const int failed = Catch::Session().run(argc, argv);
    int any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any_failed;
}
