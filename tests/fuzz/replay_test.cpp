// The fuzz corpora (tests/fuzz/corpus/<target>/: the seeds, what libFuzzer's
// runs kept, and every input that once found a bug) replayed through the fuzz
// targets in the ordinary test suite. A crash, a broken invariant or an
// exception the loader does not document fails the case; so does an input that
// makes a loader reserve gigabytes, as the address space is limited while the
// corpus runs (except under AddressSanitizer, which reserves terabytes).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <sys/resource.h>

#include "fuzz_target.hpp"

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kLimitAddressSpace = false;
#else
constexpr bool kLimitAddressSpace = true;
#endif

/// The address space this process maps now, in bytes (/proc/self/statm).
rlim_t mapped_bytes() {
    std::ifstream statm("/proc/self/statm");
    rlim_t pages = 0;
    statm >> pages;
    return pages * static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
}

/// Runs `target` on every file of the corpus `name`; returns how many there were.
template <class Target>
std::size_t replay(const std::string& name, Target target) {
    const std::filesystem::path dir = std::filesystem::path(SCALTRA_FUZZ_CORPUS) / name;
    std::vector<std::filesystem::path> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    rlimit saved{};
    getrlimit(RLIMIT_AS, &saved);
    if (kLimitAddressSpace) {
        const rlimit limited{mapped_bytes() + (rlim_t{4} << 30), saved.rlim_max};
        setrlimit(RLIMIT_AS, &limited);  // 4 GiB more than now
    }
    for (const auto& file : files) {
        INFO(file.string());
        std::ifstream in(file, std::ios::binary);
        const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
        CHECK_NOTHROW(target(std::span<const std::uint8_t>(bytes)));
    }
    setrlimit(RLIMIT_AS, &saved);
    return files.size();
}

}  // namespace

TEST_CASE("the IDX reader's fuzz corpus replays without a finding", "[fuzz]") {
    CHECK(replay("idx", fuzzing::fuzz_idx) > 0);
}

TEST_CASE("the optimizer loaders' fuzz corpus replays without a finding", "[fuzz]") {
    CHECK(replay("optimizer_load", fuzzing::fuzz_optimizer_load) > 0);
}

TEST_CASE("the checkpoint loader's fuzz corpus replays without a finding", "[fuzz]") {
    CHECK(replay("checkpoint", fuzzing::fuzz_checkpoint) > 0);
}
