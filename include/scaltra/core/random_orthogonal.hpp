// A Haar-random orthogonal matrix: the Q of a Gaussian matrix's QR, its columns
// signed by diag(R) so that the distribution is uniform (Mezzadri, 2007).
#pragma once

#include <Eigen/QR>

#include "instances.hpp"
#include "rng.hpp"
#include "types.hpp"

namespace scaltra {

/// n×n, uniformly distributed over the orthogonal group; n² draws from rng.normal()
/// (an Rng). A template so that only the files that call it compile the QR (as an
/// inline function it cost every file that includes the library a second of
/// compiling), and, for an Rng, one of the compiled instances (core/instances.hpp).
template <class Generator>
Mat<double> random_orthogonal(Generator& rng, Index n) {
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

SCALTRA_INSTANCE(Mat<double> random_orthogonal(Rng&, Index))

}  // namespace scaltra
