// Writes the seed corpora of the fuzz targets into <dir>/<target>/seed-*: small
// valid inputs of each format, which libFuzzer then mutates. Rerun it when a
// format changes: `build/fuzz/tests/fuzz/make_fuzz_seeds tests/fuzz/corpus`.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>

#include <scaltra/data/idx.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>
#include <scaltra/train/checkpoint.hpp>

#include "../optimizer_cases.hpp"

namespace {

void write(const std::filesystem::path& file, const std::string& bytes) {
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}

std::string read(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

/// An IDX file of unsigned bytes with dimensions `dims`, its data 0, 1, 2, ...
std::string idx_file(std::initializer_list<std::uint32_t> dims) {
    std::string out{'\0', '\0', '\x08', static_cast<char>(dims.size())};
    std::size_t total = 1;
    for (std::uint32_t d : dims) {
        for (int shift = 24; shift >= 0; shift -= 8)
            out.push_back(static_cast<char>((d >> shift) & 0xff));
        total *= d;
    }
    for (std::size_t i = 0; i < total; ++i)
        out.push_back(static_cast<char>(i % 251));
    return out;
}

std::string gzipped(const std::filesystem::path& scratch, const std::string& bytes) {
    gzFile out = gzopen(scratch.c_str(), "wb");
    gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(out);
    std::string zipped = read(scratch);
    std::filesystem::remove(scratch);
    return zipped;
}

template <class Opt>
std::string checkpoint_of(Opt opt, const std::filesystem::path& scratch) {
    using S = typename Opt::Scalar;
    const scaltra::Index n = opt.layout().size();
    const scaltra::problems::IllConditionedQuadratic<S> quadratic(n, 100.0, 7);
    scaltra::Vec<S> w = scaltra::Vec<S>::Ones(n);
    for (int t = 0; t < 3; ++t)
        opt.step(w, quadratic);
    scaltra::save_checkpoint(scratch, opt, w, {1, 3});
    std::string bytes = read(scratch);
    std::filesystem::remove(scratch);
    return bytes;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_fuzz_seeds <corpus dir>\n");
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    const auto scratch = std::filesystem::temp_directory_path() / "scaltra_make_fuzz_seeds";

    // IDX: the first byte 0 reads the rest as it is, 1 gzips it first.
    const std::string images = idx_file({3, 4, 4}), labels = idx_file({3});
    write(dir / "idx" / "seed-raw-images", '\0' + images);
    write(dir / "idx" / "seed-raw-labels", '\0' + labels);
    write(dir / "idx" / "seed-gzipped-images", '\x01' + images);
    write(dir / "idx" / "seed-gzip-stream", '\0' + gzipped(scratch, labels));

    // Optimizers: the first byte picks the case, then its state after 3 steps.
    using Cases = testing::AllCases;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (
            [&] {
                using Case = std::tuple_element_t<I, Cases>;
                using S = typename Case::Opt::Scalar;
                auto opt = Case::make(20);
                const scaltra::problems::IllConditionedQuadratic<S> quadratic(20, 100.0, 7);
                scaltra::Vec<S> x = scaltra::Vec<S>::Ones(20);
                for (int t = 0; t < 3; ++t)
                    opt.step(x, quadratic);
                std::ostringstream saved;
                opt.save(saved);
                write(dir / "optimizer_load" / ("seed-" + std::to_string(I)),
                      static_cast<char>(I) + saved.str());
            }(),
            ...);
    }(std::make_index_sequence<std::tuple_size_v<Cases>>{});

    // Checkpoints: the first byte 0 is Adam<float>(20), 1 SCALTRA<double> on W 4×4, b 4.
    write(dir / "checkpoint" / "seed-adam",
          '\0' + checkpoint_of(scaltra::Adam<float>(20), scratch));
    const scaltra::Layout layer = scaltra::Layout().add("W", 4, 4).add("b", 4);
    write(dir / "checkpoint" / "seed-scaltra",
          '\x01' + checkpoint_of(scaltra::Scaltra<double>(layer), scratch));
    return 0;
}
