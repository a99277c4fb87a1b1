// The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
//   0x00 0x00, a type byte (0x08: unsigned bytes), the number of dimensions,
//   each dimension as a big-endian u32, then the data, row-major.
// Files may be gzipped or raw (zlib reads both). Everything is validated: a
// file that is truncated, has a bad magic number or the wrong size raises
// CorruptData naming the file and the problem; a missing file raises MissingData.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include <zlib.h>

namespace scaltra::data {

/// An IDX array of unsigned bytes: its dimensions and its data, row-major.
struct IdxArray {
    std::vector<std::uint32_t> dims;
    std::vector<std::uint8_t> bytes;

    std::size_t count() const { return dims.empty() ? 0 : dims[0]; }
};

namespace detail {

struct GzClose {
    void operator()(gzFile_s* f) const { gzclose(f); }
};

/// Reads exactly n bytes or returns how many it got.
inline std::size_t read_up_to(gzFile file, void* out, std::size_t n) {
    std::size_t done = 0;
    auto* p = static_cast<unsigned char*>(out);
    while (done < n) {
        const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
        const int got = gzread(file, p + done, chunk);
        if (got <= 0)
            break;
        done += static_cast<std::size_t>(got);
    }
    return done;
}

}  // namespace detail

/// Reads an IDX file of unsigned bytes (gzipped or raw).
inline IdxArray read_idx(const std::string& path) {
    using scaltra::detail::concat;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))  // which gzopen opens
        throw MissingData(concat("'", path, "' is a directory, not an IDX file"));
    std::unique_ptr<gzFile_s, detail::GzClose> file(gzopen(path.c_str(), "rb"));
    if (!file)
        throw MissingData(concat("Cannot open '", path, "'"));
    unsigned char magic[4];
    if (detail::read_up_to(file.get(), magic, 4) != 4)
        throw CorruptData(concat("'", path, "' is truncated: no IDX header"));
    if (magic[0] != 0 || magic[1] != 0 || magic[3] == 0 || magic[3] > 4)
        throw CorruptData(concat("'", path, "' has a bad magic number (bytes ", int(magic[0]), " ",
                                 int(magic[1]), " ", int(magic[2]), " ", int(magic[3]),
                                 "): not an IDX file"));
    if (magic[2] != 0x08)
        throw CorruptData(concat("'", path, "' holds IDX type 0x", std::hex, int(magic[2]),
                                 std::dec, "; only unsigned bytes (0x08) are supported"));
    IdxArray out;
    std::uint64_t total = 1;
    for (int d = 0; d < magic[3]; ++d) {
        unsigned char be[4];
        if (detail::read_up_to(file.get(), be, 4) != 4)
            throw CorruptData(concat("'", path, "' is truncated in its dimensions"));
        const std::uint32_t size = (std::uint32_t{be[0]} << 24) | (std::uint32_t{be[1]} << 16)
                                   | (std::uint32_t{be[2]} << 8) | std::uint32_t{be[3]};
        out.dims.push_back(size);
        constexpr std::uint64_t most = std::uint64_t{1} << 34;  // bytes; checked before it wraps
        if (size != 0 && total > most / size)
            throw CorruptData(concat("'", path, "' declares implausibly large dimensions"));
        total *= size;
    }
    // The data in pieces that double from 64 KiB to 64 MiB, the buffer growing as
    // they arrive: a header that declares more than the file holds (a 20-byte
    // file may declare 16 GiB) costs about twice what the file holds.
    std::size_t piece = std::size_t{1} << 16;
    std::size_t got = 0;
    while (got < total) {
        const std::size_t want = std::min(static_cast<std::size_t>(total) - got, piece);
        out.bytes.resize(got + want);
        const std::size_t n = detail::read_up_to(file.get(), out.bytes.data() + got, want);
        got += n;
        if (n < want)
            break;
        piece = std::min(2 * piece, std::size_t{1} << 26);
    }
    if (got != total)
        throw CorruptData(concat("'", path, "' is truncated: its header declares ", total,
                                 " bytes of data, the file holds ", got));
    unsigned char extra;
    if (detail::read_up_to(file.get(), &extra, 1) != 0)
        throw CorruptData(concat("'", path, "' has a size mismatch: data continues after the ",
                                 total, " bytes its header declares"));
    return out;
}

}  // namespace scaltra::data
