// Matrix products that do not allocate once warmed up.
//
// Eigen's GEMM allocates its packing buffers on every call when they exceed
// EIGEN_STACK_ALLOCATION_LIMIT (128 KB), which products of layer size do. The
// workspace keeps one set of packing buffers per product shape, allocated the
// first time that shape is seen, and calls Eigen's GEMM kernel with them, so a
// repeated computation (a training step) allocates nothing after its first pass.
// Small products go through Eigen's ordinary product, which stays on the stack.
// On Eigen versions whose internals this was not written against, every product
// goes through the ordinary Eigen product (correct, but allocating).
#pragma once

#include <memory>
#include <vector>

#include <Eigen/Core>

#include "../core/types.hpp"

#define SCALTRA_AD_OWN_GEMM_BLOCKING \
    (EIGEN_VERSION_AT_LEAST(3, 4, 0) && !EIGEN_VERSION_AT_LEAST(3, 4, 90))

namespace scaltra::ad::detail {

template <class S>
class GemmWorkspace {
public:
    /// C (+)= op(A)·op(B) with op = transpose when the flag is set; C must not
    /// alias A or B. Shapes are the caller's to check.
    template <class MA, class MB, class MC>
    void multiply(const MA& A, bool ta, const MB& B, bool tb, MC&& C, bool accumulate) {
        const Index m = C.rows(), n = C.cols(), k = ta ? A.rows() : A.cols();
#if SCALTRA_AD_OWN_GEMM_BLOCKING
        if (m * n * k >= kLargeProduct && m > 1 && n > 1 && k > 1) {
            if (!accumulate)
                C.setZero();
            Blocking& blocking = blocking_for(m, n, k);
            constexpr int Col = Eigen::ColMajor, Row = Eigen::RowMajor;
            // A transposed is A's storage read row-major; the stride stays A's.
            auto run = [&]<int OrderA, int OrderB>() {
                Eigen::internal::general_matrix_matrix_product<
                    Index, S, OrderA, false, S, OrderB, false, Eigen::ColMajor,
                    1>::run(m, n, k, A.data(), A.outerStride(), B.data(), B.outerStride(), C.data(),
                            1, C.outerStride(), S(1), blocking, nullptr);
            };
            if (!ta && !tb)
                run.template operator()<Col, Col>();
            else if (ta && !tb)
                run.template operator()<Row, Col>();
            else if (!ta && tb)
                run.template operator()<Col, Row>();
            else
                run.template operator()<Row, Row>();
            return;
        }
#endif
        if (!accumulate)
            C.setZero();
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
    // Below this many multiply-adds Eigen's own product keeps its buffers on the stack.
    static constexpr Index kLargeProduct = 32 * 32 * 32;

#if SCALTRA_AD_OWN_GEMM_BLOCKING
    using Blocking = Eigen::internal::gemm_blocking_space<Eigen::ColMajor, S, S, Eigen::Dynamic,
                                                          Eigen::Dynamic, Eigen::Dynamic, 1, false>;
    struct Entry {
        Index m, n, k;
        std::unique_ptr<Blocking> blocking;
    };

    Blocking& blocking_for(Index m, Index n, Index k) {
        for (auto& e : entries_)
            if (e.m == m && e.n == n && e.k == k)
                return *e.blocking;
        auto blocking = std::make_unique<Blocking>(m, n, k, 1, true);
        blocking->allocateAll();
        entries_.push_back({m, n, k, std::move(blocking)});
        return *entries_.back().blocking;
    }

    std::vector<Entry> entries_;
#endif
};

}  // namespace scaltra::ad::detail
