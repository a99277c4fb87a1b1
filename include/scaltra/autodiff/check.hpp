// Derivative checks against central differences, for tests and for users
// writing their own ops.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "../core/validate.hpp"
#include "tape.hpp"

namespace scaltra::ad {

/// The largest error, over every element of every input, between the gradient
/// the tape computes in scalar S and central differences computed in double:
/// |g − fd| / max(1, |fd|). `record(leaves)` records a computation on the leaves'
/// tape and returns its 1×1 result; it must be generic in the scalar (a lambda
/// taking `auto leaves`), as it is also recorded on a Tape<double>. A non-finite
/// gradient or difference is an infinite error (a NaN would compare as no error).
/// Throws InvalidArgument unless step > 0.
template <class S, class Record>
double gradient_error(Record&& record, const std::vector<Mat<double>>& inputs, double step = 1e-6) {
    scaltra::detail::require_positive("step", step);
    Tape<S> tape;
    std::vector<Var<S>> leaves;
    for (const auto& input : inputs)
        leaves.push_back(tape.variable(input.template cast<S>()));
    tape.backward(record(std::span<const Var<S>>(leaves)));

    Tape<double> reference;
    std::vector<Mat<double>> x = inputs;
    auto value_at = [&] {
        reference.clear();
        std::vector<Var<double>> ref_leaves;
        for (const auto& input : x)
            ref_leaves.push_back(reference.variable(input));
        return record(std::span<const Var<double>>(ref_leaves)).value()(0, 0);
    };
    double worst = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
        const Mat<S> grad = leaves[k].adjoint();
        for (Index i = 0; i < x[k].size(); ++i) {
            const double original = x[k](i);
            const double h = step * std::max(1.0, std::abs(original));
            x[k](i) = original + h;
            const double up = value_at();
            x[k](i) = original - h;
            const double down = value_at();
            x[k](i) = original;
            const double fd = (up - down) / (2 * h);
            const double error =
                std::abs(static_cast<double>(grad(i)) - fd) / std::max(1.0, std::abs(fd));
            worst = std::isnan(error) ? std::numeric_limits<double>::infinity()
                                      : std::max(worst, error);
        }
    }
    return worst;
}

}  // namespace scaltra::ad
