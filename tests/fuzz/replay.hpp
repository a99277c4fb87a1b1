// Replaying a fuzz corpus (tests/fuzz/corpus/<target>/: the seeds, what libFuzzer's
// runs kept, and every input that once found a bug) through a target in the ordinary
// test suite. A crash, a broken invariant or an exception the loader does not
// document fails the case; so does an input that makes a loader reserve gigabytes, as
// the address space is limited while the corpus runs (except under AddressSanitizer,
// which reserves terabytes). The including target defines SCALTRA_FUZZ_CORPUS, the
// corpora's directory (tests/CMakeLists.txt).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <sys/resource.h>
#include <unistd.h>

namespace fuzzing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kLimitAddressSpace = false;
#else
inline constexpr bool kLimitAddressSpace = true;
#endif

/// The address space this process maps now, in bytes (/proc/self/statm).
inline rlim_t mapped_bytes() {
    std::ifstream statm("/proc/self/statm");
    rlim_t pages = 0;
    statm >> pages;
    return pages * static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
}

/// Runs `target` on every file of the corpus `name`, in name order; returns how many
/// there were.
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

}  // namespace fuzzing
