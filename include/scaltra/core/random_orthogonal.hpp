// A Haar-random orthogonal matrix: the Q of a Gaussian matrix's QR, its columns
// signed by diag(R) so that the distribution is uniform (Mezzadri, 2007).
#pragma once

#include <Eigen/QR>

#include "rng.hpp"
#include "types.hpp"

namespace scaltra {

/// n×n, uniformly distributed over the orthogonal group; n² draws from rng.
inline Mat<double> random_orthogonal(Rng& rng, Index n) {
    Mat<double> Z(n, n);
    for (Index i = 0; i < Z.size(); ++i)
        Z(i) = rng.normal();
    const Eigen::HouseholderQR<Mat<double>> qr(Z);
    Mat<double> Q = qr.householderQ();
    for (Index j = 0; j < n; ++j)
        if (qr.matrixQR()(j, j) < 0)
            Q.col(j) = -Q.col(j);
    return Q;
}

}  // namespace scaltra
