// One knob for the threads of matrix products: Eigen's (OpenMP, also used by the
// tape's products) and, when the build routes products to OpenBLAS
// (SCALTRA_HAVE_OPENBLAS, set by the CMake option SCALTRA_OPENBLAS), OpenBLAS's.
#pragma once

#include <Eigen/Core>

#include "validate.hpp"

#ifdef SCALTRA_HAVE_OPENBLAS
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace scaltra {

/// Threads for matrix products from now on (1: single-threaded): Eigen's (also
/// the tape's products) and OpenBLAS's. Without OpenMP and OpenBLAS, products run
/// on one thread whatever is asked.
inline void set_threads(int threads) {
    detail::require_positive("threads", threads);
    Eigen::setNbThreads(threads);
#ifdef SCALTRA_HAVE_OPENBLAS
    openblas_set_num_threads(threads);
#endif
}

}  // namespace scaltra
