// Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 60000 training and 10000 test
// images of 28×28 pixels in 10 classes, read from Debian's dataset-fashion-mnist
// (/usr/share/datasets/fashion-mnist), from SCALTRA_DATA_DIR, or from a
// directory given explicitly, in that order of precedence: explicit, then the
// environment, then Debian's path.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "../core/types.hpp"
#include "idx.hpp"
#include "labelled_set.hpp"

namespace scaltra::data {

template <Real S>
struct FashionMnist {
    LabelledSet<S> train, test;
    static constexpr Index classes = 10;
    static constexpr Index pixels = 28 * 28;
};

inline constexpr const char* fashion_mnist_default_dir = "/usr/share/datasets/fashion-mnist";

/// The directory to read: `explicit_dir` if not empty, else $SCALTRA_DATA_DIR if
/// set, else Debian's path.
inline std::string fashion_mnist_dir(const std::string& explicit_dir = "") {
    if (!explicit_dir.empty())
        return explicit_dir;
    if (const char* env = std::getenv("SCALTRA_DATA_DIR"); env != nullptr && *env != '\0')
        return env;
    return fashion_mnist_default_dir;
}

namespace detail {

/// `name`.gz in dir, or `name` uncompressed; MissingData naming the package if neither.
inline std::string find_file(const std::string& dir, const std::string& name) {
    std::error_code ec;  // a directory we may not read is one without the files
    for (const std::string& candidate : {dir + "/" + name + ".gz", dir + "/" + name})
        if (std::filesystem::exists(candidate, ec))
            return candidate;
    throw MissingData(scaltra::detail::concat(
        "Fashion-MNIST: no ", name, "(.gz) in '", dir,
        "'. Install Debian's package (apt-get install dataset-fashion-mnist), or point "
        "SCALTRA_DATA_DIR or the data-directory option at the four IDX files."));
}

/// Images (n×28×28 bytes) and labels (n bytes, each < 10) into a LabelledSet,
/// pixels scaled to [0, 1].
template <Real S>
LabelledSet<S> read_labelled(const std::string& images_path, const std::string& labels_path) {
    using scaltra::detail::concat;
    const IdxArray images = read_idx(images_path);
    const IdxArray labels = read_idx(labels_path);
    if (images.dims.size() != 3 || images.dims[1] != 28 || images.dims[2] != 28)
        throw CorruptData(concat("'", images_path, "' does not hold 28x28 images"));
    if (labels.dims.size() != 1)
        throw CorruptData(concat("'", labels_path, "' does not hold a vector of labels"));
    if (images.count() != labels.count())
        throw CorruptData(concat("Size mismatch: '", images_path, "' holds ", images.count(),
                                 " images but '", labels_path, "' ", labels.count(), " labels"));
    const auto n = static_cast<Index>(images.count());
    LabelledSet<S> set{Mat<S>(28 * 28, n), std::vector<Index>(static_cast<std::size_t>(n))};
    for (Index j = 0; j < n; ++j) {
        const std::uint8_t label = labels.bytes[static_cast<std::size_t>(j)];
        if (label >= 10)
            throw CorruptData(concat("'", labels_path, "' has label ", int(label), " at ", j,
                                     "; Fashion-MNIST labels are 0..9"));
        set.labels[static_cast<std::size_t>(j)] = label;
        const std::uint8_t* pixels = images.bytes.data() + static_cast<std::size_t>(j) * 784;
        for (Index i = 0; i < 784; ++i)
            set.inputs(i, j) = static_cast<S>(pixels[i]) / S(255);
    }
    return set;
}

}  // namespace detail

/// Loads the training and test sets (see fashion_mnist_dir for where from).
template <Real S>
FashionMnist<S> load_fashion_mnist(const std::string& dir = "") {
    const std::string d = fashion_mnist_dir(dir);
    const std::string train_images = detail::find_file(d, "train-images-idx3-ubyte");
    const std::string train_labels = detail::find_file(d, "train-labels-idx1-ubyte");
    const std::string test_images = detail::find_file(d, "t10k-images-idx3-ubyte");
    const std::string test_labels = detail::find_file(d, "t10k-labels-idx1-ubyte");
    FashionMnist<S> out;
    out.train = detail::read_labelled<S>(train_images, train_labels);
    out.test = detail::read_labelled<S>(test_images, test_labels);
    return out;
}

}  // namespace scaltra::data
