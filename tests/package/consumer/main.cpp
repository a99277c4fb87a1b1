// Smoke test for the packaged library: include the umbrella header, run a few
// Adam steps on f(x) = |x|^2 from (1, 1) and check that x shrinks.
#include <cstdio>

#include <Eigen/Core>

#include <scaltra/scaltra.hpp>

int main() {
    Eigen::VectorXd x(2);
    x << 1.0, 1.0;
    const double start = x.norm();

    auto f = [](const Eigen::Ref<const Eigen::VectorXd>& v, Eigen::Ref<Eigen::VectorXd> g) {
        g = 2.0 * v;
        return v.squaredNorm();
    };

    scaltra::Adam<double>::Options options;
    options.lr = 0.1;
    scaltra::Adam<double> opt(2, options);
    for (int i = 0; i < 100; ++i) {
        (void)opt.step(x, f);
    }

    const double end = x.norm();
    std::printf("scaltra_consumer: |x| %.6f -> %.6f\n", start, end);
    if (!x.allFinite() || !(end < start)) {
        std::fprintf(stderr, "scaltra_consumer: Adam did not decrease |x|\n");
        return 1;
    }
    return 0;
}
