// Fuzz target: the IDX reader (data/idx.hpp), raw and gzipped. The first byte
// picks the form: odd, the rest is gzip-compressed before it is read (the reader
// then parses fuzzed IDX through zlib); even, the rest is the file as it is (raw
// IDX, or a fuzzed gzip stream). The reader must return an array whose size
// matches its dimensions (their product computed without wrapping), or throw
// CorruptData.
#include <scaltra/data/idx.hpp>

#include "fuzz_target.hpp"

namespace fuzzing {

void fuzz_idx(std::span<const std::uint8_t> input) {
    if (input.empty())
        return;
    const std::string_view rest = as_chars(input.subspan(1));
    const auto path = scratch_file("idx", (input[0] & 1) ? std::string_view() : rest);
    if (input[0] & 1) {
        gzFile out = gzopen(path.c_str(), "wb");
        if (out == nullptr)
            fuzz_fail("cannot write the gzipped scratch file");
        if (!rest.empty())
            gzwrite(out, rest.data(), static_cast<unsigned>(rest.size()));
        gzclose(out);
    }
    try {
        const scaltra::data::IdxArray array = scaltra::data::read_idx(path.string());
        std::uint64_t total = 1;
        for (std::uint32_t d : array.dims)
            if (__builtin_mul_overflow(total, std::uint64_t{d}, &total))
                fuzz_fail("read_idx took dimensions whose product overflows 64 bits");
        if (array.dims.empty() || array.dims.size() > 4 || total != array.bytes.size())
            fuzz_fail("read_idx returned an array that does not match its dimensions");
    } catch (const scaltra::CorruptData&) {
    }
}

}  // namespace fuzzing

SCALTRA_FUZZ_ENTRY(fuzzing::fuzz_idx)
