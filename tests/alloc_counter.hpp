// The counters of the allocation tests (alloc_test.cpp, alloc_learned_test.cpp,
// alloc_meta_test.cpp), included first, before anything includes Eigen. Eigen's
// own allocations (which use malloc) are caught by Eigen's EIGEN_RUNTIME_NO_MALLOC
// check, routed through a counting eigen_assert while a window is open;
// alloc_test.cpp also replaces global operator new with a counting one.
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace alloc_counter {
inline std::atomic<long> allocations{0};

inline void on_eigen_assert(const char* condition) {
    if (std::strstr(condition, "heap allocation is forbidden") != nullptr) {
        ++allocations;
        return;
    }
    std::fprintf(stderr, "Eigen assertion failed: %s\n", condition);
    std::abort();
}
}  // namespace alloc_counter

#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x) ((x) ? static_cast<void>(0) : alloc_counter::on_eigen_assert(#x))

#include <scaltra/core/types.hpp>
#include <scaltra/problems.hpp>

namespace alloc_counter {
/// Allocations made while `work` runs, with Eigen's own allocations counted too.
template <class F>
long allocations_during(F&& work) {
    const long before = allocations.load();
    Eigen::internal::set_is_malloc_allowed(false);
    work();
    Eigen::internal::set_is_malloc_allowed(true);
    return allocations.load() - before;
}

/// Allocations in `steps` steps (of both forms) on the sphere, after a first one.
template <class Opt>
long allocations_per_steps(Opt& opt, int steps) {
    using S = typename Opt::Scalar;
    const scaltra::Index n = opt.layout().size();
    const scaltra::problems::Sphere<S> sphere(n);
    scaltra::Vec<S> x = scaltra::Vec<S>::Ones(n);
    scaltra::Vec<S> g(n);
    opt.step(x, sphere);  // the first step may allocate (none of ours do)
    return allocations_during([&] {
        for (int t = 0; t < steps; ++t) {
            opt.step(x, sphere);
            sphere(x, g);
            opt.update(x, g);
        }
    });
}
}  // namespace alloc_counter

