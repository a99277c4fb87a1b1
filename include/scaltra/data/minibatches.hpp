// Seeded, shuffled minibatches of a LabelledSet, and a seeded train/validation
// split. A batch is gathered into buffers the Minibatches object owns, so the
// inputs are contiguous (the tape can view them) and no batch allocates.
#pragma once

#include <span>
#include <utility>
#include <vector>

#include "../core/rng.hpp"
#include "../core/validate.hpp"
#include "fashion_mnist.hpp"

namespace scaltra::data {

template <Real S>
class Minibatches {
public:
    /// Views of one batch, valid until the next call to batch().
    struct Batch {
        Eigen::Ref<const Mat<S>> inputs;
        std::span<const Index> labels;
    };

    /// Batches of `batch_size` examples (the last of an epoch may be smaller) of
    /// `set`, which must outlive this object; shuffled by `seed`, anew every epoch.
    Minibatches(const LabelledSet<S>& set, Index batch_size, std::uint64_t seed)
        : set_(set),
          batch_size_(batch_size),
          rng_(seed),
          inputs_(set.inputs.rows(), batch_size),
          labels_(static_cast<std::size_t>(batch_size)) {
        scaltra::detail::require_positive("batch_size", batch_size_);
        if (set_.size() == 0)
            throw InvalidArgument("Minibatches: the set is empty");
        next_epoch();
    }

    Index batches_per_epoch() const { return (set_.size() + batch_size_ - 1) / batch_size_; }

    /// Draws a new order of the examples.
    void next_epoch() { order_ = rng_.permutation(set_.size()); }

    /// Batch k (0 ≤ k < batches_per_epoch()) of the current epoch.
    Batch batch(Index k) {
        if (k < 0 || k >= batches_per_epoch())
            throw InvalidArgument(
                scaltra::detail::concat("Minibatches: batch ", k, " of ", batches_per_epoch()));
        const Index first = k * batch_size_;
        const Index n = std::min(batch_size_, set_.size() - first);
        for (Index j = 0; j < n; ++j) {
            const Index example = order_[static_cast<std::size_t>(first + j)];
            inputs_.col(j) = set_.inputs.col(example);
            labels_[static_cast<std::size_t>(j)] = set_.labels[static_cast<std::size_t>(example)];
        }
        return {inputs_.leftCols(n),
                std::span<const Index>(labels_.data(), static_cast<std::size_t>(n))};
    }

private:
    const LabelledSet<S>& set_;
    Index batch_size_;
    Rng rng_;
    std::vector<Index> order_;
    Mat<S> inputs_;
    std::vector<Index> labels_;
};

/// A seeded split: `validation` examples drawn at random, the rest for training.
template <Real S>
std::pair<LabelledSet<S>, LabelledSet<S>> split(const LabelledSet<S>& set, Index validation,
                                                std::uint64_t seed) {
    if (validation < 0 || validation >= set.size())
        throw InvalidArgument(scaltra::detail::concat("Invalid validation: must be in [0, ",
                                                      set.size(), "), got ", validation));
    Rng rng(seed);
    const std::vector<Index> order = rng.permutation(set.size());
    auto take = [&](Index from, Index count) {
        LabelledSet<S> out{Mat<S>(set.inputs.rows(), count),
                           std::vector<Index>(static_cast<std::size_t>(count))};
        for (Index j = 0; j < count; ++j) {
            const Index example = order[static_cast<std::size_t>(from + j)];
            out.inputs.col(j) = set.inputs.col(example);
            out.labels[static_cast<std::size_t>(j)] = set.labels[static_cast<std::size_t>(example)];
        }
        return out;
    };
    return {take(validation, set.size() - validation), take(0, validation)};
}

}  // namespace scaltra::data
