// The soak: a long run of every optimizer (the float cases of the conformance
// suite, tests/optimizer_cases.hpp) on a small noisy quadratic, sampling the
// process's resident memory. Each optimizer runs in its own forked process, so
// one's freed memory does not hide or inflate another's. A step allocates nothing
// (alloc_test), so after warm-up the resident set must stay flat: the tool prints,
// per optimizer, the resident set after warm-up (the first 1% of the steps), its
// least and largest value after that and the spread (largest − least) / least,
// and exits 1 when a spread exceeds 1% or a run fails: throws, skips a step (a
// non-finite gradient: the run diverged) or ends with x not finite.
//
//   build/dev/bench/soak                        1e6 steps each (the README's figures)
//   build/asan/bench/soak --steps 10000         under ASan: flat too, and LeakSanitizer
//                                               checks each run at exit
//
// The gradient is the quadratic's plus Gaussian noise, so the optimizers keep
// moving for the whole run instead of settling at the minimum, as on minibatches.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include <scaltra/core/rng.hpp>
#include <scaltra/optim.hpp>

#include "../tests/optimizer_cases.hpp"

namespace {

using scaltra::Index;
using scaltra::Vec;

/// f(x) = ½ Σ dᵢ(xᵢ − 1)² + σ ξᵀx, ξ ~ N(0, I) drawn at each evaluation,
/// dᵢ from 0.01 to 1 (every case's step size is stable there, as on the
/// conformance suite's problems): the gradient a minibatch would give, without
/// allocating.
template <class S>
struct NoisyQuadratic {
    Vec<S> d;
    S sigma;
    scaltra::Rng rng{11};

    NoisyQuadratic(Index n, S noise)
        : d(Vec<S>::LinSpaced(n, S(-2), S(0)).unaryExpr([](S e) { return std::pow(S(10), e); })),
          sigma(noise) {}

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> g) {
        S loss = 0;
        for (Index i = 0; i < x.size(); ++i) {
            const S xi = static_cast<S>(rng.normal());
            const S r = x[i] - S(1);
            g[i] = d[i] * r + sigma * xi;
            loss += S(0.5) * d[i] * r * r + sigma * xi * x[i];
        }
        return loss;
    }
};

/// Anonymous resident memory of this process (/proc/self/statm: resident less
/// file-backed pages), in KiB: what a leak grows. File-backed pages are left
/// out, as a code path first taken late maps 64 KiB of the binary at once (the
/// kernel's fault-around). Read with a stack buffer: a heap-allocating reader
/// would itself grow the resident set under ASan, whose quarantine keeps freed
/// blocks.
long resident_kib() {
    char text[128] = {};
    const int fd = ::open("/proc/self/statm", O_RDONLY);
    const ssize_t got = fd < 0 ? -1 : ::read(fd, text, sizeof text - 1);
    if (fd >= 0)
        ::close(fd);
    long size = 0, resident = 0, file_backed = 0;
    if (got <= 0 || std::sscanf(text, "%ld %ld %ld", &size, &resident, &file_backed) != 3)
        return -1;
    return (resident - file_backed) * (sysconf(_SC_PAGESIZE) / 1024);
}

struct Options {
    long steps = 1'000'000;
    long samples = 100;
    std::string_view only;  // an optimizer's name, or all
};

/// One optimizer's soak, in this process; the exit status of its child.
template <class Case>
int soak(const Options& options) {
    using S = float;
    constexpr Index n = 20;
    auto opt = Case::make(n, scaltra::NonFinitePolicy::skip);
    NoisyQuadratic<S> f(n, S(0.1));
    Vec<S> x = Vec<S>::Zero(n);
    const long warm_up = std::max(1L, options.steps / 100);
    const long every = std::max(1L, options.steps / options.samples);
    long warm = 0, least = 0, largest = 0;
    resident_kib();  // sscanf's first call touches ~400 KiB of its own: not the optimizer's
    for (long t = 1; t <= options.steps; ++t) {
        opt.step(x, f);
        if (t == warm_up) {
            warm = least = largest = resident_kib();
        } else if (t > warm_up && (t % every == 0 || t == options.steps)) {
            const long rss = resident_kib();
            least = std::min(least, rss);
            largest = std::max(largest, rss);
        }
    }
    const double spread = 100.0 * static_cast<double>(largest - least) / static_cast<double>(least);
    const bool finite = scaltra::detail::all_finite(x);
    std::printf("%-8s %10ld %10ld %10ld %10ld %8.3f%% %8lld %s\n", std::string(opt.name()).c_str(),
                options.steps, warm, least, largest, spread,
                static_cast<long long>(opt.skipped_steps()), finite ? "" : "x not finite");
    std::fflush(stdout);
    const bool sampled = least > 0;  // resident_kib() could read /proc/self/statm
    const bool flat = spread <= 1.0;
    return sampled && flat && finite && opt.skipped_steps() == 0 ? 0 : 1;
}

/// Runs soak<Case> in a child process; true when it exited 0.
template <class Case>
bool soak_in_child(const Options& options) {
    std::fflush(stdout);
    const pid_t child = fork();
    if (child < 0) {
        std::perror("fork");
        return false;
    }
    if (child == 0) {
        int status = 1;
        try {
            status = soak<Case>(options);
        } catch (const std::exception& e) {
            std::printf("%s: %s\n", std::string(Case::make(20).name()).c_str(), e.what());
        }
        std::exit(status);  // exit, not _exit: LeakSanitizer checks at exit
    }
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--steps" && i + 1 < argc) {
            options.steps = std::atol(argv[++i]);
        } else if (arg == "--optimizer" && i + 1 < argc) {
            options.only = argv[++i];
        } else {
            std::fprintf(stderr, "usage: soak [--steps N] [--optimizer NAME]\n");
            return 2;
        }
    }
    if (options.steps < 100) {
        std::fprintf(stderr, "soak: --steps must be at least 100\n");
        return 2;
    }
    std::printf("anonymous resident set in KiB: after warm-up (%ld steps), then least and "
                "largest\n",
                std::max(1L, options.steps / 100));
    std::printf("%-8s %10s %10s %10s %10s %9s %8s\n", "name", "steps", "warm", "least", "largest",
                "spread", "skipped");
    bool ok = true;
    using Cases = testing::AllCases;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        auto one = [&]<class Case>() {
            if constexpr (std::is_same_v<typename Case::Opt::Scalar, float>)
                if (options.only.empty() || Case::make(20).name() == options.only)
                    ok = soak_in_child<Case>(options) && ok;
        };
        (one.template operator()<std::tuple_element_t<I, Cases>>(), ...);
    }(std::make_index_sequence<std::tuple_size_v<Cases>>{});
    return ok ? 0 : 1;
}
