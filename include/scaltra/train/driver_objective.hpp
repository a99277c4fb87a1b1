// The objective the training drivers hand to an optimizer: the driver's
// bookkeeping around each loss-and-gradient call, and, where the driver has one,
// the function-space discrepancy of a ModelObjective (core/concepts.hpp) that APO
// asks for.
#pragma once

#include <concepts>
#include <utility>

#include "../core/concepts.hpp"

namespace scaltra::detail {

/// The driver has no discrepancy to offer: its objective is a plain Objective.
struct NoDiscrepancy {};

/// Calls `evaluate(x, grad)` as the objective and, unless Compare is
/// NoDiscrepancy, `compare(u, w, rho, grad)` as its discrepancy.
template <Real S, class Evaluate, class Compare = NoDiscrepancy>
class DriverObjective {
public:
    DriverObjective(Evaluate& evaluate, Compare& compare)
        : evaluate_(evaluate), compare_(compare) {}

    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) {
        return evaluate_(x, grad);
    }

    S discrepancy(const Eigen::Ref<const Vec<S>>& u, const Eigen::Ref<const Vec<S>>& w,
                  Discrepancy rho,
                  Eigen::Ref<Vec<S>> grad) requires(!std::same_as<Compare, NoDiscrepancy>) {
        return static_cast<S>(compare_(u, w, rho, grad));
    }

private:
    Evaluate& evaluate_;
    Compare& compare_;
};

}  // namespace scaltra::detail
