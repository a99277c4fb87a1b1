// train/fit.hpp and train/checkpoint.hpp: training a classifier on minibatches,
// per-epoch evaluation, early stopping, the epoch loggers, and checkpoints that
// resume a run bit-identically.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <scaltra/data.hpp>
#include <scaltra/nn.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/train.hpp>

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <unistd.h>

using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;
using Set = scaltra::data::LabelledSet<float>;
using Style = scaltra::ProgressBar::Style;

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

/// A file name of this process in the temporary directory (presets may run in parallel).
std::filesystem::path temporary(const std::string& name) {
    return std::filesystem::temp_directory_path()
           / ("scaltra_" + std::to_string(getpid()) + "_" + name);
}

struct StopAtStep {
    std::int64_t at;
    template <class Opt>
    bool on_step(const Opt&, const scaltra::Progress<float>& p,
                 const Eigen::Ref<const Vec<float>>&) const {
        return p.iteration == at;
    }
};

/// Adam reporting a state of our choosing: an optimizer of the concept whose
/// state has diverged, which none of the library's reaches.
struct Diverged {
    using Scalar = float;
    scaltra::Adam<float> adam;
    scaltra::Adam<float>::State state_;
    template <class F>
    float step(Eigen::Ref<Vec<float>> x, F&& f) {
        return adam.step(x, f);
    }
    void reset() { adam.reset(); }
    std::string_view name() const { return adam.name(); }
    void save(std::ostream& out) const { adam.save(out); }
    void load(std::istream& in) { adam.load(in); }
    const scaltra::Adam<float>::State& state() const { return state_; }
};
static_assert(scaltra::Optimizer<Diverged>);

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

    // Bad input is found before the first step: w and the optimizer stay as they were.
    const Vec<float> w_before = w;
    const auto state_before = opt.state();
    scaltra::EarlyStopAtMinLoss blind(2, 0, scaltra::Monitor::validation_loss);
    CHECK_THROWS_WITH(scaltra::fit(model, opt, w, train, {.epochs = 1}, blind),
                      Catch::Contains("no validation set"));
    CHECK_THROWS_AS(scaltra::fit(model, opt, w, train, {.epochs = 0}), scaltra::InvalidArgument);
    CHECK_THROWS_AS(scaltra::fit(model, opt, w, train, {.epochs = 2, .initial_epoch = 3}),
                    scaltra::InvalidArgument);
    const Set empty{Mat<float>(10, 0), {}};
    CHECK_THROWS_AS(scaltra::fit(model, opt, w, empty, {.epochs = 1}), scaltra::InvalidArgument);
    CHECK_THROWS_WITH(scaltra::fit(model, opt, w, train, {.epochs = 1, .test = &empty}),
                      Catch::Contains("test set is empty"));
    const Set narrow{Mat<float>::Zero(9, 5), std::vector<Index>(5, 0)};
    CHECK_THROWS_WITH(scaltra::fit(model, opt, w, train, {.epochs = 1, .validation = &narrow}),
                      Catch::Contains("validation inputs have 9 features"));
    Set bad_label = train;
    bad_label.labels[150] = 3;  // the model has classes 0, 1, 2
    CHECK_THROWS_WITH(scaltra::fit(model, opt, w, bad_label, {.epochs = 1}),
                      Catch::Contains("label is 3"));
    Set short_labels = train;
    short_labels.labels.pop_back();
    CHECK_THROWS_AS(scaltra::fit(model, opt, w, short_labels, {.epochs = 1}),
                    scaltra::DimensionMismatch);
    // Parameters of another size are refused before any callback's on_begin.
    Vec<float> w_short = w.head(w.size() - 1);
    std::ostringstream never;
    CHECK_THROWS_WITH(scaltra::fit(model, opt, w_short, train, {.epochs = 1},
                                   scaltra::EpochCsvLogger(never)),
                      Catch::Contains("fit parameters"));
    CHECK(never.str().empty());
    scaltra::Adam<float> other_layout(w.size() + 1);
    CHECK_THROWS_WITH(scaltra::fit(model, other_layout, w, train, {.epochs = 1}),
                      Catch::Contains("the optimizer's layout"));
    CHECK(w == w_before);
    CHECK(scaltra::bitwise_equal(opt.state(), state_before));
}

TEST_CASE("fit ends mid-epoch on a callback or a non-finite loss, without an epoch end", "[fit]") {
    const Set train = blobs(200, 1);
    scaltra::nn::Mlp<float> model({10, 8, 3}, scaltra::nn::Relu{}, 3);
    Vec<float> w = model.init();
    scaltra::Adam<float> opt(model.layout());
    std::ostringstream bar, epochs;
    const auto stopped = scaltra::fit(model, opt, w, train, {.epochs = 3, .batch_size = 50},
                                      StopAtStep{6}, scaltra::ProgressBar(bar, Style::redraw),
                                      scaltra::EpochCsvLogger(epochs));
    CHECK(stopped.status == scaltra::Status::stopped_by_callback);
    CHECK(stopped.iterations == 6);
    CHECK(stopped.history.size() == 1);  // epoch 2 did not complete
    CHECK(count_lines(epochs.str()) == 1 + 1);
    CHECK(count_lines(bar.str()) == 2);  // epoch 1's summary, then the bar where it stopped
    CHECK_THAT(bar.str(), Catch::EndsWith("\n") && Catch::Contains("epoch 2/3 ["));

    // A NaN input makes the loss non-finite at the batch that holds it.
    Set poisoned = train;
    poisoned.inputs(0, 123) = std::numeric_limits<float>::quiet_NaN();
    Vec<float> w2 = model.init();
    scaltra::Adam<float> opt2(model.layout());
    const auto failed = scaltra::fit(model, opt2, w2, poisoned, {.epochs = 2, .batch_size = 50});
    CHECK(failed.status == scaltra::Status::non_finite);
    CHECK(failed.iterations < 4);
    CHECK(failed.history.empty());
    CHECK(w2.allFinite());  // the step that saw the NaN did not move w

    // Under the skip policy the batch is skipped and counted, and training goes on.
    Vec<float> w3 = model.init();
    scaltra::Adam<float> opt3(model.layout(), {.on_non_finite = scaltra::NonFinitePolicy::skip});
    const auto skipped = scaltra::fit(model, opt3, w3, poisoned, {.epochs = 2, .batch_size = 50});
    CHECK(skipped.status == scaltra::Status::max_iterations);
    CHECK(skipped.skipped_steps == 2);  // once per epoch
    CHECK(std::isfinite(skipped.history[1].train_loss));
    CHECK(w3.allFinite());
}

TEST_CASE("fit reports epochs through the progress bar and the epoch CSV logger", "[fit]") {
    const Set train = blobs(100, 1), test = blobs(50, 2);
    scaltra::nn::Mlp<float> model({10, 8, 3}, scaltra::nn::Relu{}, 3);
    Vec<float> w = model.init();
    scaltra::Adam<float> opt(model.layout());
    std::ostringstream bar, epochs, steps;
    scaltra::fit(model, opt, w, train, {.epochs = 3, .batch_size = 25, .test = &test},
                 scaltra::ProgressBar(bar, Style::redraw), scaltra::EpochCsvLogger(epochs),
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

/// Runs `body` with file descriptor 2 (std::cerr's) pointing at `fd`, then restores it.
template <class F>
void with_stderr_on(int fd, F body) {
    std::cerr.flush();
    const int saved = dup(STDERR_FILENO);
    REQUIRE(saved >= 0);
    REQUIRE(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
    body();
    std::cerr.flush();
    dup2(saved, STDERR_FILENO);
    close(saved);
}

TEST_CASE("the progress bar redraws on a terminal and prints whole lines to a log", "[fit]") {
    const Set train = blobs(100, 1);
    scaltra::nn::Mlp<float> model({10, 8, 3}, scaltra::nn::Relu{}, 3);
    auto run = [&](std::ostream& out, Style style) {
        Vec<float> w = model.init();
        scaltra::Adam<float> opt(model.layout());
        scaltra::fit(model, opt, w, train, {.epochs = 3, .batch_size = 10},
                     scaltra::ProgressBar(out, style));
    };
    std::ostringstream redrawn_out, logged_out, automatic_out;
    run(redrawn_out, Style::redraw);
    run(logged_out, Style::lines);
    run(automatic_out, Style::automatic);  // a string stream is not a terminal
    const std::string redrawn = redrawn_out.str(), logged = logged_out.str(),
                      automatic = automatic_out.str();
    CHECK(std::count(redrawn.begin(), redrawn.end(), '\r') > 3);
    CHECK(count_lines(redrawn) == 3);
    for (const std::string& text : {logged, automatic}) {
        CHECK(text.find('\r') == std::string::npos);
        CHECK(count_lines(text) == 3);  // one line per epoch, none per step
        CHECK_THAT(text, Catch::StartsWith("epoch 1/3  loss ")
                             && Catch::Contains("\nepoch 3/3  loss ") && Catch::EndsWith(" s\n"));
    }

    // automatic: a redraw on std::cerr only while its descriptor is a terminal.
    CHECK_FALSE(scaltra::ProgressBar(automatic_out).redraws());
    const int master = posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(master >= 0);
    REQUIRE(grantpt(master) == 0);
    REQUIRE(unlockpt(master) == 0);
    const int terminal = open(ptsname(master), O_RDWR | O_NOCTTY);
    REQUIRE(terminal >= 0);
    with_stderr_on(terminal, [] {
        CHECK(scaltra::ProgressBar(std::cerr).redraws());
        CHECK(scaltra::ProgressBar(std::clog).redraws());
        CHECK_FALSE(scaltra::ProgressBar(std::cerr, Style::lines).redraws());
    });
    close(terminal);
    close(master);
    const std::filesystem::path log = temporary("progress.log");
    const int file = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(file >= 0);
    with_stderr_on(file, [] {
        CHECK_FALSE(scaltra::ProgressBar(std::cerr).redraws());
        CHECK(scaltra::ProgressBar(std::cerr, Style::redraw).redraws());
    });
    close(file);
    std::filesystem::remove(log);
}

TEST_CASE("a checkpoint resumes fit bit-identically, and bad checkpoints change nothing", "[fit]") {
    const Set train = blobs(300, 1);
    const scaltra::FitOptions<float> options{.epochs = 4, .batch_size = 32, .seed = 6};
    scaltra::nn::Mlp<float> model({10, 16, 3}, scaltra::nn::Tanh{}, 3);
    const std::filesystem::path path = temporary("fit_test.ckpt");

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
    CHECK(w == w_full);                                 // bit-identical
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
    // The record's header, epoch and iteration fields and the parameters' field
    // header take 105 bytes; cut halfway through the parameters' values.
    const std::size_t parameters_at = 105;
    REQUIRE(good.substr(parameters_at - 31 + 4, 10) == "parameters");
    write(good.substr(0, parameters_at + 2 * static_cast<std::size_t>(w.size())));
    CHECK_THROWS_WITH(scaltra::load_checkpoint(path, opt, w),
                      Catch::Contains("truncated in field 'parameters'"));
    write(good + "x");  // trailing bytes after the optimizer's state
    CHECK_THROWS_WITH(scaltra::load_checkpoint(path, opt, w),
                      Catch::Contains("goes on after the optimizer's state"));
    write(good);
    // What load would refuse is not written, and the previous checkpoint stays.
    Vec<float> w_nan = w;
    w_nan[3] = NAN;
    CHECK_THROWS_AS(scaltra::save_checkpoint(path, opt, w_nan, {1, 1}), scaltra::NonFinite);
    Vec<float> w_short = w.head(5);
    CHECK_THROWS_AS(scaltra::save_checkpoint(path, opt, w_short, {1, 1}),
                    scaltra::DimensionMismatch);
    {
        // No optimizer here reaches a non-finite state (the conformance and fault
        // suites check it); an optimizer of the concept that does is refused.
        Diverged diverged{opt, opt.state()};
        diverged.state_.v[2] = std::numeric_limits<float>::infinity();
        CHECK_THROWS_WITH(scaltra::save_checkpoint(path, diverged, w, {1, 1}),
                          Catch::Contains("would not load") && Catch::Contains("'v'"));
    }
    CHECK(read_file(path.string()) == good);
    CHECK(!std::filesystem::exists(path.string() + ".tmp"));
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
    CHECK_THROWS_AS(scaltra::save_checkpoint(path, opt, w, {-1, 0}), scaltra::InvalidArgument);
    CHECK(!std::filesystem::exists(path));
    // A failed write leaves no temporary file: here the rename fails, path being a directory.
    std::filesystem::create_directory(path);
    CHECK_THROWS_WITH(scaltra::save_checkpoint(path, opt, w, {1, 1}),
                      Catch::Contains("cannot rename"));
    CHECK(!std::filesystem::exists(path.string() + ".tmp"));
    CHECK_THROWS_WITH(scaltra::load_checkpoint(path, opt, w), Catch::Contains("is a directory"));
    std::filesystem::remove(path);

    // every = 2 over 3 epochs saves after epochs 2 and 3 (the last one always).
    Vec<float> w_every = model.init();
    scaltra::Adam<float> opt_every(model.layout());
    auto three = options;
    three.epochs = 3;
    scaltra::fit(model, opt_every, w_every, train, three, scaltra::Checkpoint(path, 2));
    CHECK(scaltra::load_checkpoint(path, opt, w).epoch == 3);
    CHECK(w == w_every);
    std::filesystem::remove(path);
}

TEST_CASE("CSV loggers append to a log without repeating its header", "[fit]") {
    const Set train = blobs(100, 1);
    scaltra::nn::Mlp<float> model({10, 8, 3}, scaltra::nn::Relu{}, 3);
    Vec<float> w = model.init();
    scaltra::Adam<float> opt(model.layout());
    const auto steps = temporary("steps.csv"), epochs = temporary("epochs.csv");
    scaltra::fit(model, opt, w, train, {.epochs = 1, .batch_size = 50},
                 scaltra::CsvLogger(steps.string(), 1, true),
                 scaltra::EpochCsvLogger(epochs.string(), true));  // new files: headers
    scaltra::fit(model, opt, w, train, {.epochs = 2, .batch_size = 50, .initial_epoch = 1},
                 scaltra::CsvLogger(steps.string(), 1, true),
                 scaltra::EpochCsvLogger(epochs.string(), true));
    const std::string step_log = read_file(steps.string()), epoch_log = read_file(epochs.string());
    CHECK(count_lines(step_log) == 1 + 4);
    CHECK_THAT(step_log, Catch::StartsWith("iteration,") && Catch::Contains("\n4,"));
    CHECK(count_lines(epoch_log) == 1 + 2);
    CHECK_THAT(epoch_log, Catch::Contains("\n1,2,") && Catch::Contains("\n2,4,"));
    scaltra::fit(model, opt, w, train, {.epochs = 1, .batch_size = 50},
                 scaltra::CsvLogger(steps.string()));  // not appending: a fresh log
    CHECK(count_lines(read_file(steps.string())) == 1 + 2);
    std::filesystem::remove(steps);
    std::filesystem::remove(epochs);
}
