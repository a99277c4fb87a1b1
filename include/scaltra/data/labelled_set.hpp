// A labelled data set: examples as columns, an integer label each.
#pragma once

#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/types.hpp"

namespace scaltra::data {

template <Real S>
struct LabelledSet {
    Mat<S> inputs;              ///< features × examples
    std::vector<Index> labels;  ///< one per column, in [0, classes)

    Index size() const { return inputs.cols(); }
};

/// Throws DimensionMismatch unless `set` has one label per example (`what`
/// names the caller).
template <Real S>
void require_one_label_each(const LabelledSet<S>& set, std::string_view what) {
    if (static_cast<Index>(set.labels.size()) != set.size())
        throw DimensionMismatch(scaltra::detail::concat(what, ": ", set.labels.size(),
                                                        " labels for ", set.size(), " examples"));
}

/// Copies the examples `which` of `set` into the first which.size() columns of
/// `inputs` and entries of `labels` (sized by the caller: no allocation here).
template <Real S>
void gather(const LabelledSet<S>& set, std::span<const Index> which,
            std::type_identity_t<Eigen::Ref<Mat<S>>> inputs, std::span<Index> labels) {
    for (std::size_t j = 0; j < which.size(); ++j) {
        inputs.col(static_cast<Index>(j)) = set.inputs.col(which[j]);
        labels[j] = set.labels[static_cast<std::size_t>(which[j])];
    }
}

}  // namespace scaltra::data
