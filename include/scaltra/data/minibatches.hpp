// Seeded, shuffled minibatches of a LabelledSet, and a seeded train/validation
// split. A batch is gathered into buffers the Minibatches object owns, so the
// inputs are contiguous (the tape can view them) and no batch allocates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "../core/rng.hpp"
#include "../core/validate.hpp"
#include "labelled_set.hpp"

namespace scaltra::data {

template <Real S>
class Minibatches {
public:
    /// Views of one batch, valid until the next call to batch().
    struct Batch {
        Eigen::Ref<const Mat<S>> inputs;
        std::span<const Index> labels;
    };

    /// Batches of `batch_size` examples (the last of an epoch may be smaller; a
    /// batch_size beyond the set's size means the whole set) of `set`, which must
    /// outlive this object; shuffled anew every epoch, in an order that depends
    /// only on `seed` and the epoch number. Starts at epoch 0.
    Minibatches(const LabelledSet<S>& set, Index batch_size, std::uint64_t seed)
        : set_(set),
          batch_size_(checked_batch_size(set, batch_size)),
          seed_(seed),
          inputs_(set.inputs.rows(), batch_size_),
          labels_(static_cast<std::size_t>(batch_size_)) {
        order_.resize(static_cast<std::size_t>(set_.size()));
        start_epoch(0);
    }

    Index batches_per_epoch() const { return (set_.size() + batch_size_ - 1) / batch_size_; }

    /// Orders the examples for epoch `epoch` (≥ 0), a function of the seed and the
    /// epoch alone, as torch's `DistributedSampler.set_epoch`: a run resumed at
    /// epoch e sees the batches the uninterrupted run saw. No allocation.
    void start_epoch(std::int64_t epoch) {
        scaltra::detail::require_nonnegative("epoch", epoch);
        epoch_ = epoch;
        std::iota(order_.begin(), order_.end(), Index(0));
        Rng::stream(seed_, static_cast<std::uint64_t>(epoch)).shuffle(std::span<Index>(order_));
    }

    void next_epoch() { start_epoch(epoch_ + 1); }

    /// Batch k (0 ≤ k < batches_per_epoch()) of the current epoch.
    Batch batch(Index k) {
        if (k < 0 || k >= batches_per_epoch())
            throw InvalidArgument(
                scaltra::detail::concat("Minibatches: batch ", k, " of ", batches_per_epoch()));
        const Index first = k * batch_size_;
        const Index n = std::min(batch_size_, set_.size() - first);
        gather(set_,
               std::span<const Index>(order_).subspan(static_cast<std::size_t>(first),
                                                      static_cast<std::size_t>(n)),
               inputs_.leftCols(n), labels_);
        return {inputs_.leftCols(n),
                std::span<const Index>(labels_.data(), static_cast<std::size_t>(n))};
    }

private:
    /// min(batch_size, set.size()), once the set and the size are checked: before
    /// the buffers are sized by it.
    static Index checked_batch_size(const LabelledSet<S>& set, Index batch_size) {
        scaltra::detail::require_positive("batch_size", batch_size);
        if (set.size() == 0)
            throw InvalidArgument("Minibatches: the set is empty");
        require_one_label_each(set, "Minibatches");
        return std::min(batch_size, set.size());
    }

    const LabelledSet<S>& set_;
    Index batch_size_;
    std::uint64_t seed_;
    std::int64_t epoch_ = 0;
    std::vector<Index> order_;
    Mat<S> inputs_;
    std::vector<Index> labels_;
};

/// A seeded split: `validation` examples drawn at random, the rest for training.
template <Real S>
std::pair<LabelledSet<S>, LabelledSet<S>> split(const LabelledSet<S>& set, Index validation,
                                                std::uint64_t seed) {
    require_one_label_each(set, "split");
    if (validation < 0 || validation >= set.size())
        throw InvalidArgument(scaltra::detail::concat("Invalid validation: must be in [0, ",
                                                      set.size(), "), got ", validation));
    Rng rng(seed);
    const std::vector<Index> order = rng.permutation(set.size());
    auto take = [&](Index from, Index count) {
        LabelledSet<S> out{Mat<S>(set.inputs.rows(), count),
                           std::vector<Index>(static_cast<std::size_t>(count))};
        gather(set,
               std::span<const Index>(order).subspan(static_cast<std::size_t>(from),
                                                     static_cast<std::size_t>(count)),
               out.inputs, out.labels);
        return out;
    };
    return {take(validation, set.size() - validation), take(0, validation)};
}

}  // namespace scaltra::data
