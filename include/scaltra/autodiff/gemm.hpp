// Matrix products that do not allocate once warmed up.
//
// Eigen's GEMM allocates its packing buffers on every call when they exceed
// EIGEN_STACK_ALLOCATION_LIMIT (128 KB), which products of layer size do. The
// workspace keeps one set of packing buffers per product shape, allocated the
// first time that shape is seen, and calls Eigen's GEMM kernel with them, so a
// repeated computation (a training step) allocates nothing after its first pass.
// Small products go through Eigen's ordinary product, which stays on the stack.
// With OpenMP and Eigen::nbThreads() > 1, large products split C's columns
// among the threads.
// On Eigen versions whose internals this was not written against, every product
// goes through the ordinary Eigen product (correct, but allocating). With
// EIGEN_USE_BLAS, Eigen sends its products (all but tiny ones) to the BLAS
// (sgemm/dgemm), which threads and keeps its buffers by itself.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include <Eigen/Core>

#include "../core/types.hpp"

#if EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 4, 90) && !defined(EIGEN_USE_BLAS)
#define SCALTRA_AD_OWN_GEMM_BLOCKING 1
#else
#define SCALTRA_AD_OWN_GEMM_BLOCKING 0
#endif

namespace scaltra::ad::detail {

template <class S>
class GemmWorkspace {
public:
    /// C (+)= op(A)·op(B) with op = transpose when the flag is set; C must not
    /// alias A or B. Shapes are the caller's to check.
    template <class MA, class MB, class MC>
    void multiply(const MA& A, bool ta, const MB& B, bool tb, MC&& C, bool accumulate) {
        if (!accumulate)
            C.setZero();
#if SCALTRA_AD_OWN_GEMM_BLOCKING
        const Index m = C.rows(), n = C.cols(), k = ta ? A.rows() : A.cols();
        if (m * n * k >= kLargeProduct && m > 1 && n > 1 && k > 1) {
            // Columns of C (and of op(B)) are split among the threads, each with
            // its own packing buffers, prepared here because the cache is not
            // thread-safe.
            const int threads = thread_count(n);
            Blocking* blockings[kMaxThreads];
            for (int t = 0; t < threads; ++t)
                blockings[t] =
                    &blocking_for(m, slice_end(n, t, threads) - slice_end(n, t - 1, threads), k, t);
            constexpr int Col = Eigen::ColMajor, Row = Eigen::RowMajor;
            auto run_slice = [&](int t) {
                const Index c0 = slice_end(n, t - 1, threads);
                const Index width = slice_end(n, t, threads) - c0;
                // A transposed is A's storage read row-major; strides stay the owners'.
                const S* b = B.data() + (tb ? c0 : c0 * B.outerStride());
                S* c = C.data() + c0 * C.outerStride();
                auto run = [&]<int OrderA, int OrderB>() {
                    Eigen::internal::general_matrix_matrix_product<
                        Index, S, OrderA, false, S, OrderB, false, Eigen::ColMajor,
                        1>::run(m, width, k, A.data(), A.outerStride(), b, B.outerStride(), c, 1,
                                C.outerStride(), S(1), *blockings[t], nullptr);
                };
                if (!ta && !tb)
                    run.template operator()<Col, Col>();
                else if (ta && !tb)
                    run.template operator()<Row, Col>();
                else if (!ta && tb)
                    run.template operator()<Col, Row>();
                else
                    run.template operator()<Row, Row>();
            };
#ifdef _OPENMP
            if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static, 1)
                for (int t = 0; t < threads; ++t)
                    run_slice(t);
                return;
            }
#endif
            run_slice(0);
            return;
        }
#endif
        if (!ta && !tb)
            C.noalias() += A * B;
        else if (ta && !tb)
            C.noalias() += A.transpose() * B;
        else if (!ta && tb)
            C.noalias() += A * B.transpose();
        else
            C.noalias() += A.transpose() * B.transpose();
    }

private:
#if SCALTRA_AD_OWN_GEMM_BLOCKING
    // Below this many multiply-adds Eigen's own product keeps its buffers on the stack.
    static constexpr Index kLargeProduct = 32 * 32 * 32;
    static constexpr int kMaxThreads = 64;

    /// Eigen's thread count (Eigen::setNbThreads, OpenMP's default otherwise),
    /// while every thread gets at least 16 columns.
    static int thread_count(Index n) {
        const int wanted = std::min(Eigen::nbThreads(), kMaxThreads);
        return static_cast<int>(std::max<Index>(1, std::min<Index>(wanted, n / 16)));
    }

    /// One past the last column of slice t (t = −1 gives 0).
    static Index slice_end(Index n, int t, int threads) {
        return n * (t + 1) / threads;
    }

    using Blocking = Eigen::internal::gemm_blocking_space<Eigen::ColMajor, S, S, Eigen::Dynamic,
                                                          Eigen::Dynamic, Eigen::Dynamic, 1, false>;
    struct Entry {
        Index m, n, k;
        int slot;  ///< the thread that uses it
        std::unique_ptr<Blocking> blocking;
    };

    Blocking& blocking_for(Index m, Index n, Index k, int slot) {
        for (auto& e : entries_)
            if (e.m == m && e.n == n && e.k == k && e.slot == slot)
                return *e.blocking;
        auto blocking = std::make_unique<Blocking>(m, n, k, 1, true);
        blocking->allocateAll();
        entries_.push_back({m, n, k, slot, std::move(blocking)});
        return *entries_.back().blocking;
    }

    std::vector<Entry> entries_;
#endif
};

}  // namespace scaltra::ad::detail
