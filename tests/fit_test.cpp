// train/fit.hpp and train/checkpoint.hpp: training a classifier on minibatches,
// per-epoch evaluation, early stopping, the epoch loggers, and checkpoints that
// resume a run bit-identically.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <scaltra/data.hpp>
#include <scaltra/nn.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/train.hpp>

#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;
using Set = scaltra::data::LabelledSet<float>;

namespace {

/// Three Gaussian classes in 10 dimensions, means N(0, I) apart, unit noise.
Set blobs(Index count, std::uint64_t seed) {
    scaltra::Rng means_rng(99), rng(seed);
    Mat<float> means(10, 3);
    for (Index i = 0; i < means.size(); ++i)
        means(i) = static_cast<float>(means_rng.normal());
    Set set{Mat<float>(10, count), std::vector<Index>(static_cast<std::size_t>(count))};
    for (Index j = 0; j < count; ++j) {
        const auto c = static_cast<Index>(rng.below(3));
        set.labels[static_cast<std::size_t>(j)] = c;
        set.inputs.col(j) = means.col(c) + rng.normal_vector<float>(10);
    }
    return set;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::size_t count_lines(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST_CASE("fit: two epochs of Adam reach > 90% training accuracy, with a history", "[fit]") {
    const Set train = blobs(1200, 1), test = blobs(300, 2);
    scaltra::nn::Mlp<float> model({10, 32, 3}, scaltra::nn::Relu{}, 3);
    Vec<float> w = model.init();
    const double before = model.accuracy(w, train.inputs, train.labels);
    scaltra::Adam<float> opt(model.layout(), {.lr = 1e-2f});
    const auto result = scaltra::fit(model, opt, w, train,
                                     {.epochs = 2, .batch_size = 32, .seed = 4, .test = &test});
    const double after = model.accuracy(w, train.inputs, train.labels);
    INFO("accuracy before " << before << ", after " << after);
    CHECK(after > 0.90);
    CHECK(result.status == scaltra::Status::max_iterations);
    CHECK(result.iterations == 2 * 38);  // ⌈1200/32⌉ steps per epoch
    REQUIRE(result.history.size() == 2);
    CHECK(result.history[1].epoch == 2);
    CHECK(result.history[1].iteration == 76);
    CHECK(result.history[1].train_loss < result.history[0].train_loss);
    const auto e = model.evaluate(w, test.inputs, test.labels);
    CHECK(result.history[1].metrics.test_accuracy == e.accuracy);
    CHECK(result.history[1].metrics.test_loss == e.loss);
    CHECK(std::isnan(result.history[1].metrics.validation_loss));  // no validation set given
}

TEST_CASE("fit stops on an early-stop callback and validates its input", "[fit]") {
    const Set train = blobs(200, 1), validation = blobs(100, 5);
    scaltra::nn::Mlp<float> model({10, 8, 3}, scaltra::nn::Relu{}, 3);
    Vec<float> w = model.init();
    scaltra::Sgd<float> opt(model.layout(), {.lr = 1e-3f});
    // No epoch improves by 1e9: the first sets the best, two more without progress stop.
    scaltra::EarlyStopAtMinLoss early(2, 1e9, scaltra::Monitor::validation_loss);
    const auto result = scaltra::fit(
        model, opt, w, train, {.epochs = 50, .batch_size = 50, .validation = &validation}, early);
    CHECK(result.status == scaltra::Status::stopped_by_callback);
    CHECK(result.history.size() == 3);
    CHECK(result.iterations == 3 * 4);
    CHECK(early.best_loss() == result.history[0].metrics.validation_loss);

    scaltra::EarlyStopAtMinLoss blind(2, 0, scaltra::Monitor::validation_loss);
    CHECK_THROWS_WITH(scaltra::fit(model, opt, w, train, {.epochs = 1}, blind),
                      Catch::Contains("no validation set"));
    CHECK_THROWS_AS(scaltra::fit(model, opt, w, train, {.epochs = 0}), scaltra::InvalidArgument);
    CHECK_THROWS_AS(scaltra::fit(model, opt, w, train, {.epochs = 2, .initial_epoch = 3}),
                    scaltra::InvalidArgument);
    const Set empty{Mat<float>(10, 0), {}};
    CHECK_THROWS_AS(scaltra::fit(model, opt, w, empty, {.epochs = 1}), scaltra::InvalidArgument);
}

TEST_CASE("fit reports epochs through the progress bar and the epoch CSV logger", "[fit]") {
    const Set train = blobs(100, 1), test = blobs(50, 2);
    scaltra::nn::Mlp<float> model({10, 8, 3}, scaltra::nn::Relu{}, 3);
    Vec<float> w = model.init();
    scaltra::Adam<float> opt(model.layout());
    std::ostringstream bar, epochs, steps;
    scaltra::fit(model, opt, w, train, {.epochs = 3, .batch_size = 25, .test = &test},
                 scaltra::ProgressBar(bar), scaltra::EpochCsvLogger(epochs),
                 scaltra::CsvLogger(steps));
    CHECK_THAT(bar.str(), Catch::Contains("epoch 1/3  loss ") && Catch::Contains("test loss ")
                              && Catch::Contains("epoch 3/3  loss "));
    CHECK(count_lines(bar.str()) == 3);  // one summary line per epoch, no dangling bar
    CHECK(count_lines(epochs.str()) == 1 + 3);
    CHECK_THAT(epochs.str(), Catch::StartsWith("epoch,iteration,train_loss,validation_loss,"
                                               "validation_accuracy,test_loss,test_accuracy,"
                                               "elapsed_seconds\n1,4,"));
    CHECK_THAT(epochs.str(), Catch::Contains(",,,"));  // the validation columns are empty
    CHECK(count_lines(steps.str()) == 1 + 12);
}

TEST_CASE("a checkpoint resumes fit bit-identically; bad checkpoints change nothing", "[fit]") {
    const Set train = blobs(300, 1);
    const scaltra::FitOptions<float> options{.epochs = 4, .batch_size = 32, .seed = 6};
    scaltra::nn::Mlp<float> model({10, 16, 3}, scaltra::nn::Tanh{}, 3);
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() / "scaltra_fit_test.ckpt";

    // The uninterrupted run.
    Vec<float> w_full = model.init();
    scaltra::Adam<float> opt_full(model.layout(), {.lr = 3e-3f});
    scaltra::fit(model, opt_full, w_full, train, options);

    // Two epochs, checkpointed after each, then a fresh process-like restart.
    {
        Vec<float> w = model.init();
        scaltra::Adam<float> opt(model.layout(), {.lr = 3e-3f});
        auto halfway = options;
        halfway.epochs = 2;
        scaltra::fit(model, opt, w, train, halfway, scaltra::Checkpoint(path));
    }
    CHECK(std::filesystem::exists(path));
    CHECK(!std::filesystem::exists(path.string() + ".tmp"));  // renamed into place
    Vec<float> w = Vec<float>::Zero(model.layout().size());
    scaltra::Adam<float> opt(model.layout(), {.lr = 3e-3f});
    const scaltra::CheckpointInfo info = scaltra::load_checkpoint(path, opt, w);
    CHECK(info.epoch == 2);
    CHECK(info.iteration == 2 * 10);
    auto rest = options;
    rest.initial_epoch = info.epoch;
    std::ostringstream steps;
    const auto result = scaltra::fit(model, opt, w, train, rest, scaltra::CsvLogger(steps));
    CHECK(result.history.size() == 2);
    CHECK(result.history.front().epoch == 3);
    CHECK(result.iterations == 40);
    CHECK_THAT(steps.str(), Catch::Contains("\n21,"));  // iterations continue
    CHECK(w == w_full);  // bit-identical
    CHECK(scaltra::bitwise_equal(opt.state(), opt_full.state()));

    // Corrupt or mismatched checkpoints: an exception, w and the optimizer unchanged.
    const std::string good = read_file(path.string());
    const Vec<float> w_before = w;
    const auto state_before = opt.state();
    auto write = [&](const std::string& bytes) {
        std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    };
    write(good.substr(0, good.size() - 7));  // truncated inside the optimizer's state
    CHECK_THROWS_AS(scaltra::load_checkpoint(path, opt, w), scaltra::CorruptState);
    write(good.substr(0, 40));  // truncated inside the parameters
    CHECK_THROWS_AS(scaltra::load_checkpoint(path, opt, w), scaltra::CorruptState);
    write(good);
    scaltra::Sgd<float> other(model.layout());
    Vec<float> w_other = w;
    CHECK_THROWS_WITH(scaltra::load_checkpoint(path, other, w_other),
                      Catch::Contains("belongs to optimizer 'Adam'"));
    CHECK(w_other == w);
    Vec<float> wrong_size = Vec<float>::Zero(5);
    scaltra::Adam<float> small(5);
    CHECK_THROWS_AS(scaltra::load_checkpoint(path, small, wrong_size), scaltra::CorruptState);
    CHECK(w == w_before);
    CHECK(scaltra::bitwise_equal(opt.state(), state_before));
    std::filesystem::remove(path);
    CHECK_THROWS_AS(scaltra::load_checkpoint(path, opt, w), scaltra::MissingData);
    CHECK_THROWS_AS(scaltra::Checkpoint("x", 0), scaltra::InvalidArgument);
}
