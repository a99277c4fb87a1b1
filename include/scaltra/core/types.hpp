// Eigen aliases and scalar traits shared by every scaltra header.
#pragma once

#include <concepts>
#include <cstdint>

#include <Eigen/Core>

namespace scaltra {

using Index = Eigen::Index;

template <class S>
using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;

template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;

/// A matrix of 32-bit indices (LODO's permutations, one per column).
using IndexMat = Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic>;

/// The scalars every optimizer and the autodiff core are instantiated on.
template <class S>
concept Real = std::same_as<S, float> || std::same_as<S, double>;

}  // namespace scaltra
