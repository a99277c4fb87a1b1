// Crash safety of checkpoints (train/checkpoint.hpp), tested by killing: a forked
// training job that checkpoints every epoch, and resumes from its checkpoint when
// there is one, is killed with SIGKILL at random moments, hundreds of times.
// After every kill the checkpoint on disk must load and hold exactly the bytes an
// uninterrupted run writes at that epoch (never torn, never lost once written,
// never behind the one before), and each job that runs to the end must end
// bit-identically to the uninterrupted run.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <scaltra/nn.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/train.hpp>

#include <catch2/catch.hpp>
#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

using scaltra::Index;
using scaltra::Vec;

namespace {

constexpr std::int64_t kEpochs = 30;
constexpr int kKills = 250;

/// The job: a small MLP trained by SCALTRA (a learned optimizer, so the
/// checkpoint also holds a meta-optimizer's state), 4 steps per epoch.
struct Job {
    scaltra::data::LabelledSet<float> train{scaltra::Mat<float>(8, 64),
                                            std::vector<Index>(64)};
    scaltra::nn::Mlp<float> model{{8, 16, 3}, scaltra::nn::Tanh{}, 11};
    scaltra::FitOptions<float> options{.epochs = kEpochs, .batch_size = 16, .seed = 5};

    Job() {
        scaltra::Rng rng(21);
        for (Index j = 0; j < 64; ++j) {
            train.labels[static_cast<std::size_t>(j)] = static_cast<Index>(rng.below(3));
            train.inputs.col(j) = rng.normal_vector<float>(8);
        }
    }
    scaltra::Scaltra<float> optimizer() const { return scaltra::Scaltra<float>(model.layout()); }
};

std::string read_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

/// What a restarted job does: resume from `path` if it holds a checkpoint, train
/// to the last epoch, checkpointing after each.
void run_job(Job& job, const std::filesystem::path& path) {
    auto opt = job.optimizer();
    Vec<float> w = job.model.init();
    auto options = job.options;
    if (std::filesystem::exists(path))
        options.initial_epoch = scaltra::load_checkpoint(path, opt, w).epoch;
    if (options.initial_epoch < options.epochs)
        scaltra::fit(job.model, opt, w, job.train, options, scaltra::Checkpoint(path));
}

/// Records the checkpoint an uninterrupted run writes after each epoch.
struct ReferenceCheckpoints {
    std::filesystem::path path;
    std::map<std::int64_t, std::string>* bytes;

    template <class Opt, class S>
    void on_epoch_end(const Opt& opt, const scaltra::Progress<S>& p,
                      const Eigen::Ref<const Vec<S>>& w) {
        scaltra::save_checkpoint(path, opt, w, {p.epoch, p.iteration});
        (*bytes)[p.epoch] = read_bytes(path);
    }
};

}  // namespace

TEST_CASE("checkpoints survive SIGKILL at random moments, and resumed runs are bit-identical",
          "[checkpoint][kill]") {
    Job job;
    const auto directory = std::filesystem::temp_directory_path()
                           / ("scaltra_kill_" + std::to_string(getpid()));
    std::filesystem::create_directories(directory);
    const auto path = directory / "job.ckpt";
    const auto temporary = std::filesystem::path(path.string() + ".tmp");

    // Starts the job in a child process; its exit status is 0 when it finished.
    auto start = [&] {
        const pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            try {
                run_job(job, path);
                _exit(0);
            } catch (...) {
                _exit(3);
            }
        }
        return pid;
    };

    // An uninterrupted job, timed: the kills land uniformly over that time.
    const auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    REQUIRE(waitpid(start(), &status, 0) > 0);
    const auto run_time = std::chrono::steady_clock::now() - t0;
    REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    std::vector<std::string> finals{read_bytes(path)};
    std::filesystem::remove(path);

    // Checkpoints seen on disk after a kill, by epoch; checked once the reference is known.
    std::multimap<std::int64_t, std::string> seen;
    std::mt19937_64 random(2026);
    std::uniform_int_distribution<std::int64_t> delay_us(
        0, std::chrono::duration_cast<std::chrono::microseconds>(run_time).count());
    int kills = 0, mid_write = 0, completed = 0, lost = 0, regressed = 0, unreadable = 0;
    std::int64_t last_epoch = 0;  // of this round's latest checkpoint (0: none yet)
    while (kills < kKills) {
        const pid_t pid = start();
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us(random)));
        kill(pid, SIGKILL);
        REQUIRE(waitpid(pid, &status, 0) == pid);
        const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        REQUIRE((killed || (WIFEXITED(status) && WEXITSTATUS(status) == 0)));
        if (killed) {
            ++kills;
            mid_write += std::filesystem::exists(temporary) ? 1 : 0;
        }
        if (!std::filesystem::exists(path)) {
            lost += last_epoch > 0 ? 1 : 0;
            continue;
        }
        const std::string bytes = read_bytes(path);
        auto opt = job.optimizer();
        Vec<float> w = Vec<float>::Zero(job.model.layout().size());
        std::int64_t epoch = -1;
        try {
            epoch = scaltra::load_checkpoint(path, opt, w).epoch;
        } catch (const scaltra::Error& e) {
            ++unreadable;
            UNSCOPED_INFO("kill " << kills << ": " << e.what());
            continue;
        }
        regressed += epoch < last_epoch ? 1 : 0;
        last_epoch = epoch;
        seen.emplace(epoch, bytes);
        if (epoch == kEpochs) {  // the job is done: the next round starts afresh
            ++completed;
            finals.push_back(bytes);
            std::filesystem::remove(path);
            last_epoch = 0;
        }
    }
    CHECK(unreadable == 0);
    CHECK(lost == 0);
    CHECK(regressed == 0);

    // The uninterrupted run's checkpoints, computed here after the forks.
    std::map<std::int64_t, std::string> reference;
    {
        auto opt = job.optimizer();
        Vec<float> w = job.model.init();
        scaltra::fit(job.model, opt, w, job.train, job.options,
                     ReferenceCheckpoints{directory / "reference.ckpt", &reference});
    }
    REQUIRE(reference.size() == static_cast<std::size_t>(kEpochs));
    int differing = 0;
    for (const auto& [epoch, bytes] : seen)
        differing += bytes == reference.at(epoch) ? 0 : 1;
    CHECK(differing == 0);
    for (const std::string& final_checkpoint : finals)
        CHECK(final_checkpoint == reference.at(kEpochs));
    CHECK(seen.size() > static_cast<std::size_t>(kKills / 2));  // the kills did not all land early
    const double run_ms = std::chrono::duration<double, std::milli>(run_time).count();
    WARN("checkpoint kill test: " << kills << " kills (" << mid_write
                                  << " while a checkpoint was being written), " << seen.size()
                                  << " checkpoints checked, " << completed + 1
                                  << " jobs run to the end; an uninterrupted job takes "
                                  << run_ms << " ms");
    std::filesystem::remove_all(directory);
}
