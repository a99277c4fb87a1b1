// data/: the IDX reader and the Fashion-MNIST loader on files the test writes
// itself, valid and corrupted, gzipped and raw.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <Eigen/Eigenvalues>

#include <scaltra/data.hpp>

#include <catch2/catch.hpp>
#include <zlib.h>

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

/// An IDX file's bytes: magic 0 0 0x08 ndims, big-endian dims, then data.
Bytes idx(const std::vector<std::uint32_t>& dims, const Bytes& data) {
    Bytes out{0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
    for (auto d : dims)
        for (int shift : {24, 16, 8, 0})
            out.push_back(static_cast<std::uint8_t>(d >> shift));
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

void write_raw(const fs::path& path, const Bytes& bytes) {
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
}

void write_gz(const fs::path& path, const Bytes& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()))
            == static_cast<int>(bytes.size()));
    gzclose(f);
}

struct TempDir {
    fs::path path;
    TempDir()
        : path(fs::temp_directory_path() / ("scaltra_data_test_" + std::to_string(::getpid()))) {
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
};

/// The message of the exception of type E that f throws ("" and a failure if none).
template <class E, class F>
std::string message_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    FAIL_CHECK("no exception of the expected type");
    return "";
}

Bytes pattern(std::size_t n, std::uint8_t modulo = 251) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i)
        b[i] = static_cast<std::uint8_t>(i % modulo);
    return b;
}

}  // namespace

TEST_CASE("IDX files load, gzipped or raw", "[data]") {
    TempDir dir;
    const Bytes data = pattern(2 * 3 * 4);
    write_raw(dir.path / "a.idx", idx({2, 3, 4}, data));
    write_gz(dir.path / "a.idx.gz", idx({2, 3, 4}, data));
    for (const char* name : {"a.idx", "a.idx.gz"}) {
        const auto array = scaltra::data::read_idx((dir.path / name).string());
        CHECK(array.dims == std::vector<std::uint32_t>{2, 3, 4});
        CHECK(array.bytes == data);
        CHECK(array.count() == 2);
    }
}

TEST_CASE("corrupt IDX files raise CorruptData naming the file and the problem", "[data]") {
    TempDir dir;
    auto rejects = [&](const Bytes& bytes, const char* says) {
        for (bool gz : {false, true}) {
            const fs::path path = dir.path / (gz ? "bad.gz" : "bad");
            gz ? write_gz(path, bytes) : write_raw(path, bytes);
            INFO((gz ? "gzipped: " : "raw: ") << says);
            CHECK_THAT(
                message_of<scaltra::CorruptData>([&] { scaltra::data::read_idx(path.string()); }),
                Catch::Contains(path.string()) && Catch::Contains(says));
        }
    };
    const Bytes good = idx({4, 5}, pattern(20));
    rejects(Bytes(good.begin(), good.end() - 3), "truncated");
    rejects(Bytes(good.begin(), good.begin() + 2), "truncated");
    rejects(Bytes(good.begin(), good.begin() + 6), "truncated in its dimensions");
    Bytes bad_magic = good;
    bad_magic[0] = 0x1f;
    rejects(bad_magic, "bad magic number");
    Bytes wrong_type = good;
    wrong_type[2] = 0x0D;
    rejects(wrong_type, "only unsigned bytes");
    Bytes longer = good;
    longer.push_back(7);
    rejects(longer, "size mismatch");
    // 2¹⁷·2¹⁷·2³⁰ bytes: the product wraps to 0 in 64 bits unless checked first.
    rejects(idx({1u << 17, 1u << 17, 1u << 30}, {}), "implausibly large");
    rejects(idx({1u << 17, 1u << 18}, {}), "implausibly large");  // 2³⁵ bytes
    CHECK_THROWS_AS(scaltra::data::read_idx((dir.path / "absent").string()), scaltra::MissingData);
    CHECK_THROWS_WITH(scaltra::data::read_idx(dir.path.string()), Catch::Contains("directory"));
}

TEST_CASE("Fashion-MNIST loads from a directory, the environment, or says what to install",
          "[data]") {
    TempDir dir;
    auto write_set = [&](const std::string& prefix, std::uint32_t n, bool gz) {
        const Bytes images = idx({n, 28, 28}, pattern(std::size_t{n} * 784));
        Bytes labels_data(n);
        for (std::uint32_t i = 0; i < n; ++i)
            labels_data[i] = static_cast<std::uint8_t>(i % 10);
        const Bytes labels = idx({n}, labels_data);
        if (gz) {
            write_gz(dir.path / (prefix + "-images-idx3-ubyte.gz"), images);
            write_gz(dir.path / (prefix + "-labels-idx1-ubyte.gz"), labels);
        } else {
            write_raw(dir.path / (prefix + "-images-idx3-ubyte"), images);
            write_raw(dir.path / (prefix + "-labels-idx1-ubyte"), labels);
        }
    };
    write_set("train", 12, true);
    write_set("t10k", 5, false);  // uncompressed files are found too

    const auto fm = scaltra::data::load_fashion_mnist<float>(dir.path.string());
    CHECK(fm.train.size() == 12);
    CHECK(fm.test.size() == 5);
    CHECK(fm.train.inputs.rows() == 784);
    CHECK(fm.train.labels[11] == 1);
    CHECK(fm.train.inputs(1, 0) == Approx(1.0f / 255));
    CHECK(fm.train.inputs(250, 0) == Approx(250.0f / 255));
    CHECK(fm.train.inputs.maxCoeff() <= 1.0f);
    CHECK(fm.train.inputs.minCoeff() >= 0.0f);

    ::setenv("SCALTRA_DATA_DIR", dir.path.c_str(), 1);
    CHECK(scaltra::data::fashion_mnist_dir() == dir.path.string());
    CHECK(scaltra::data::load_fashion_mnist<double>().test.size() == 5);
    CHECK(scaltra::data::fashion_mnist_dir("/elsewhere") == "/elsewhere");  // explicit wins
    ::unsetenv("SCALTRA_DATA_DIR");
    CHECK(scaltra::data::fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist");

    CHECK_THAT(message_of<scaltra::MissingData>(
                   [&] { scaltra::data::load_fashion_mnist<float>((dir.path / "none").string()); }),
               Catch::Contains("dataset-fashion-mnist"));

    // Labels and images that disagree in count, or a label out of range.
    write_raw(dir.path / "t10k-labels-idx1-ubyte", idx({4}, {0, 1, 2, 3}));
    CHECK_THROWS_WITH(scaltra::data::load_fashion_mnist<float>(dir.path.string()),
                      Catch::Contains("Size mismatch") && Catch::Contains("5 images"));
    write_raw(dir.path / "t10k-labels-idx1-ubyte", idx({5}, {0, 1, 2, 3, 12}));
    CHECK_THROWS_WITH(scaltra::data::load_fashion_mnist<float>(dir.path.string()),
                      Catch::Contains("label 12"));
}

TEST_CASE("minibatches cover every example once per epoch, in a seeded order", "[data]") {
    scaltra::data::LabelledSet<float> set{scaltra::Mat<float>(2, 10),
                                          std::vector<scaltra::Index>(10)};
    for (scaltra::Index j = 0; j < 10; ++j) {
        set.inputs.col(j).setConstant(static_cast<float>(j));
        set.labels[static_cast<std::size_t>(j)] = j;
    }
    scaltra::data::Minibatches<float> batches(set, 4, 42);
    CHECK(batches.batches_per_epoch() == 3);
    auto epoch = [&] {
        std::vector<scaltra::Index> seen;
        for (scaltra::Index k = 0; k < batches.batches_per_epoch(); ++k) {
            const auto b = batches.batch(k);
            CHECK(b.inputs.cols() == static_cast<scaltra::Index>(b.labels.size()));
            for (std::size_t j = 0; j < b.labels.size(); ++j) {
                CHECK(b.inputs(1, static_cast<scaltra::Index>(j))
                      == static_cast<float>(b.labels[j]));
                seen.push_back(b.labels[j]);
            }
        }
        return seen;
    };
    const auto first = epoch();
    CHECK(batches.batch(2).labels.size() == 2);  // the last batch holds the rest
    std::vector<scaltra::Index> sorted = first;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == std::vector<scaltra::Index>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    batches.next_epoch();
    const auto second = epoch();
    CHECK(second != first);  // reshuffled
    scaltra::data::Minibatches<float> same_seed(set, 4, 42);
    CHECK(same_seed.batch(0).labels[0] == first[0]);
    same_seed.start_epoch(1);  // an epoch's order depends on the seed and the epoch only
    for (scaltra::Index k = 0; k < 3; ++k)
        CHECK(std::ranges::equal(same_seed.batch(k).labels,
                                 std::span(second).subspan(static_cast<std::size_t>(4 * k),
                                                           same_seed.batch(k).labels.size())));
    CHECK_THROWS_AS(same_seed.start_epoch(-1), scaltra::InvalidArgument);
    scaltra::data::Minibatches<float> other_seed(set, 10, 43), seed_42(set, 10, 42);
    CHECK(!std::ranges::equal(other_seed.batch(0).labels, seed_42.batch(0).labels));
    CHECK_THROWS_AS(batches.batch(3), scaltra::InvalidArgument);
    CHECK_THROWS_AS(scaltra::data::Minibatches<float>(set, 0, 1), scaltra::InvalidArgument);
    CHECK_THROWS_AS(scaltra::data::Minibatches<float>(set, -3, 1), scaltra::InvalidArgument);
    // A batch beyond the set is the whole set (it allocates 10 columns, not 2⁶⁰).
    scaltra::data::Minibatches<float> whole(set, scaltra::Index{1} << 60, 42);
    CHECK(whole.batches_per_epoch() == 1);
    CHECK(whole.batch(0).labels.size() == 10);
    // One label per example, or the batches and the split would read past them.
    auto short_labels = set;
    short_labels.labels.pop_back();
    CHECK_THROWS_WITH(scaltra::data::Minibatches<float>(short_labels, 4, 1),
                      Catch::Contains("9 labels for 10 examples"));
    CHECK_THROWS_AS(scaltra::data::split(short_labels, 3, 7), scaltra::DimensionMismatch);

    const auto [train, validation] = scaltra::data::split(set, 3, 7);
    CHECK(train.size() == 7);
    CHECK(validation.size() == 3);
    std::vector<scaltra::Index> all = train.labels;
    all.insert(all.end(), validation.labels.begin(), validation.labels.end());
    std::sort(all.begin(), all.end());
    CHECK(all == sorted);  // disjoint and complete
    CHECK(validation.inputs(0, 0) == static_cast<float>(validation.labels[0]));
    CHECK_THROWS_AS(scaltra::data::split(set, 10, 7), scaltra::InvalidArgument);
}

TEST_CASE("synthetic tasks follow their definitions", "[data]") {
    scaltra::Rng rng(5);
    const auto ls = scaltra::data::least_squares_task<double>(rng);
    CHECK(ls.X.rows() == 100);
    CHECK(ls.X.cols() == 100);
    CHECK(ls.X.array().square().mean() == Approx(1.0).epsilon(0.05));
    // Its gradient against central differences, and its minimiser is stationary.
    const scaltra::Vec<double> theta = rng.normal_vector<double>(100);
    scaltra::Vec<double> g(100), scratch(100);
    ls(theta, g);
    for (scaltra::Index i : {0, 17, 99}) {
        scaltra::Vec<double> up = theta, down = theta;
        up[i] += 1e-5;
        down[i] -= 1e-5;
        CHECK((ls(up, scratch) - ls(down, scratch)) / 2e-5 == Approx(g[i]).epsilon(1e-6));
    }
    ls(ls.solution(), g);
    CHECK(g.norm() < 1e-6);

    scaltra::Rng a(9), b(9);
    const auto bh = scaltra::data::beverton_holt_task<double>(a);
    CHECK(bh.train.size() == 500);
    CHECK(bh.validation.size() == 100);
    const double R0 = bh.parameters[0], K = bh.parameters[1];
    CHECK((R0 >= 1 && R0 < 2 && K >= 1 && K < 2));
    CHECK(bh.train.inputs.minCoeff() >= 0);
    CHECK(bh.train.inputs.maxCoeff() < 10);
    const auto n = bh.train.inputs.row(0).array();
    const Eigen::ArrayXd residual =
        (bh.train.targets.row(0).array() - R0 * n / (K + n)).transpose();
    CHECK(residual.mean() == Approx(0).margin(0.02));
    CHECK(std::sqrt(residual.square().mean()) == Approx(0.1).epsilon(0.1));  // the N(0, 0.1²) noise
    CHECK(scaltra::data::beverton_holt_task<double>(b).train.targets
          == bh.train.targets);  // seeded

    const auto si = scaltra::data::smooth_interpolation_task<float>(rng, 50, 10, -2, 3);
    const float pa = si.parameters[0], pb = si.parameters[1], pc = si.parameters[2];
    CHECK(si.train.inputs.minCoeff() >= -2);
    CHECK(si.train.inputs.maxCoeff() < 3);
    for (scaltra::Index j = 0; j < 50; ++j) {
        const float x = si.train.inputs(0, j);
        CHECK(si.train.targets(0, j)
              == Approx(pa * std::cos(pb * x) * std::exp(-pc * std::abs(x))).epsilon(1e-5));
    }
    CHECK_THROWS_AS(scaltra::data::smooth_interpolation_task<float>(rng, 5, 5, 1, 1),
                    scaltra::InvalidArgument);
    CHECK_THROWS_WITH(scaltra::data::smooth_interpolation_task<float>(
                          rng, 5, 5, -std::numeric_limits<double>::infinity(), 1),
                      Catch::Contains("finite"));
    CHECK_THROWS_AS(scaltra::data::beverton_holt_task<float>(rng, 0), scaltra::InvalidArgument);
}

TEST_CASE("the noisy quadratic bowl has the spectrum, gradient and walk it promises", "[data]") {
    scaltra::data::NoisyQuadraticBowl<double> bowl(100, 3);
    const auto& H = bowl.hessian();
    CHECK((H - H.transpose()).norm() < 1e-12);
    CHECK(!H.isDiagonal(1e-3));  // rotated
    Eigen::SelfAdjointEigenSolver<scaltra::Mat<double>> eig(H);
    CHECK(eig.eigenvalues()[0] == Approx(1e-3).epsilon(1e-8));
    CHECK(eig.eigenvalues()[99] == Approx(1.0).epsilon(1e-10));
    CHECK(eig.eigenvalues()[50] == Approx(std::pow(10.0, -3.0 + 3.0 * 50 / 99)).epsilon(1e-8));
    // ‖I − H‖_F/√n from the spectrum alone: the 0.883 LODO starts from with G = I.
    double expected = 0;
    for (int i = 0; i < 100; ++i)
        expected += std::pow(1 - std::pow(10.0, -3.0 + 3.0 * i / 99), 2) / 100;
    const double start_error = bowl.inverse_hessian_error(scaltra::Mat<double>::Identity(100, 100));
    CHECK(start_error == Approx(std::sqrt(expected)).epsilon(1e-12));
    CHECK(start_error == Approx(0.883).margin(5e-4));
    CHECK(bowl.inverse_hessian_error(H.inverse()) < 1e-9);

    // Value and gradient: ½(x − c)ᵀH(x − c) and H(x − c), before and after a drift.
    scaltra::Rng rng(8);
    const scaltra::Vec<double> x = rng.normal_vector<double>(100);
    scaltra::Vec<double> g(100);
    CHECK(bowl(x, g) == Approx(0.5 * x.dot(H * x)));
    CHECK(g.isApprox(H * x));
    bowl.drift();
    const scaltra::Vec<double> c = bowl.centre();
    CHECK(c.norm() == Approx(10.0).epsilon(0.25));  // one N(0, I) step in 100 dimensions
    CHECK(bowl(x, g) == Approx(0.5 * (x - c).dot(H * (x - c))));
    CHECK(g.isApprox(H * (x - c)));
    scaltra::data::NoisyQuadraticBowl<double> same(100, 3);
    same.drift();
    CHECK(same.centre() == c);              // seeded
    for (scaltra::Index i : {0, 42, 99}) {  // the gradient against central differences
        scaltra::Vec<double> up = x, down = x, scratch(100);
        up[i] += 1e-5;
        down[i] -= 1e-5;
        CHECK((bowl(up, scratch) - bowl(down, scratch)) / 2e-5 == Approx(g[i]).margin(1e-8));
    }
    scaltra::data::NoisyQuadraticBowl<double> slow(400, 3, {.drift = 0.5});
    slow.drift();
    CHECK(slow.centre().norm() == Approx(0.5 * 20.0).epsilon(0.1));  // σ = 0.5, not σ² = 0.25

    scaltra::data::NoisyQuadraticBowl<float> axis(4, 1, {.rotate = false});
    CHECK(axis.hessian().isDiagonal());
    CHECK_THROWS_AS(scaltra::data::NoisyQuadraticBowl<float>(4, 1, {.min_eigenvalue = 0}),
                    scaltra::InvalidArgument);
    CHECK_THROWS_AS(scaltra::data::NoisyQuadraticBowl<float>(
                        4, 1, {.min_eigenvalue = 1, .max_eigenvalue = 0.5}),
                    scaltra::InvalidArgument);
    CHECK_THROWS_AS(axis.inverse_hessian_error(scaltra::Mat<float>::Identity(3, 3)),
                    scaltra::DimensionMismatch);
}
