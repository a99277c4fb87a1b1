// What the fuzz targets share. Each target is a function
//     void fuzz_<name>(std::span<const std::uint8_t> input)
// that feeds `input` to one loader and checks what it returns; it catches only
// the errors the loader documents (CorruptData, CorruptState, ...), so anything
// else (another exception, a crash, a leak, undefined behaviour, a broken
// invariant, which calls fuzz_fail) is a finding. SCALTRA_FUZZ_ENTRY makes the
// function libFuzzer's entry point, except in the corpus replay that the test
// suite builds with SCALTRA_FUZZ_REPLAY (tests/fuzz/replay_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>

#include <unistd.h>

namespace fuzzing {

/// A broken invariant: report it and abort, which libFuzzer records as a crash.
[[noreturn]] inline void fuzz_fail(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}

/// A file of this process's own, rewritten with `bytes` (the loaders take paths).
inline std::filesystem::path scratch_file(std::string_view name, std::string_view bytes) {
    const auto path = std::filesystem::temp_directory_path()
                      / ("scaltra_fuzz_" + std::to_string(getpid()) + "_" + std::string(name));
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
}

// The targets (one per *_fuzz.cpp); replay_test.cpp replays idx's and checkpoint's
// corpora, and each optimizer family's test file the optimizer loaders'.
void fuzz_idx(std::span<const std::uint8_t> input);
void fuzz_optimizer_load(std::span<const std::uint8_t> input);
void fuzz_checkpoint(std::span<const std::uint8_t> input);

inline std::string_view as_chars(std::span<const std::uint8_t> input) {
    return {reinterpret_cast<const char*>(input.data()), input.size()};
}

}  // namespace fuzzing

#ifdef SCALTRA_FUZZ_REPLAY
#define SCALTRA_FUZZ_ENTRY(target)
#else
#define SCALTRA_FUZZ_ENTRY(target)                                                           \
    extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {      \
        target(std::span<const std::uint8_t>(data, size));                                  \
        return 0;                                                                            \
    }
#endif
