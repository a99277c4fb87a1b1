// Data parallelism on Fashion-MNIST (dist/), run under mpirun:
//
//   mpirun -np 2 build/release/bench/data_parallel_bench [--steps 100] [--repeats 5]
//                [--optimizer adam,scaltra,lodo] [--batch 128] [--data DIR]
//
// For each optimizer: `steps` steps of the example's 784-256-128-10 MLP (batch 128,
// one thread a rank) in one process — rank 0 alone while the other ranks sleep —
// and the same steps data-parallel over all ranks (fit on a DataParallelClassifier),
// alternated `repeats` times. It prints the median steps per second of both and
// their ratio (so the two are measured in the same run, under the same load), and
// how far the data-parallel parameters are from the one-process ones after the
// steps: ‖w_P − w_1‖ / ‖w_1‖ and the largest |w_P − w_1| / (|w_1| + 1e-3 ‖w_1‖∞);
// what is communicated per step (the gradient, a loss, a count and a flag) against
// the size of the learned meta-state φ, which never is; and the time of one batch's
// gradient alone (rank 0, median of 20) against that of a whole one-rank step,
// whose difference is the optimizer's own work, which every rank repeats, and the
// time of the collective sum of a gradient over the ranks (median of 20).
#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include <scaltra/dist.hpp>
#include <scaltra/scaltra.hpp>

namespace {

using S = float;
using scaltra::Index;
using scaltra::Vec;

struct Settings {
    Index steps = 100, repeats = 5, batch = 128;
    std::string optimizers = "adam,scaltra,lodo", data;
};

[[noreturn]] void usage(const char* problem) {
    std::fprintf(stderr,
                 "data_parallel_bench: %s\nusage: mpirun -np P data_parallel_bench [--steps N] "
                 "[--repeats R] [--optimizer adam,scaltra,lodo] [--batch B] [--data DIR]\n",
                 problem);
    std::exit(2);
}

Settings parse(int argc, char** argv) {
    Settings s;
    for (int i = 1; i < argc; i += 2) {
        const std::string flag = argv[i];
        if (i + 1 >= argc)
            usage(("missing a value after " + flag).c_str());
        const std::string value = argv[i + 1];
        auto count = [&] {
            char* end = nullptr;
            const long v = std::strtol(value.c_str(), &end, 10);
            if (end == value.c_str() || *end != '\0' || v <= 0)
                usage((flag + " needs a positive integer, got '" + value + "'").c_str());
            return static_cast<Index>(v);
        };
        if (flag == "--steps")
            s.steps = count();
        else if (flag == "--repeats")
            s.repeats = count();
        else if (flag == "--batch")
            s.batch = count();
        else if (flag == "--optimizer")
            s.optimizers = value;
        else if (flag == "--data")
            s.data = value;
        else
            usage(("unknown option " + flag).c_str());
    }
    return s;
}

/// Waits for the other ranks at a barrier without spinning on a core, so a rank
/// that waits does not slow the one that runs alone.
void sleep_at_barrier() {
    MPI_Request request;
    MPI_Ibarrier(MPI_COMM_WORLD, &request);
    for (int done = 0;;) {
        MPI_Test(&request, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        const timespec millisecond{0, 1000000};
        nanosleep(&millisecond, nullptr);
    }
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// A fresh optimizer of the example's defaults (README, "The Fashion-MNIST example").
template <class F>
void with_optimizer(const std::string& name, const scaltra::Layout& layout, F&& f) {
    if (name == "adam")
        f(scaltra::Adam<S>(layout, {.lr = 1e-3f}));
    else if (name == "scaltra") {
        scaltra::ScaltraOptions<S> options;
        options.alpha0 = 0.5f;
        f(scaltra::Scaltra<S>(layout, options));
    } else if (name == "lodo")
        f(scaltra::Lodo<S>(layout, {.alpha0 = 1.0f}));
    else if (name == "sgd")
        f(scaltra::Sgd<S>(layout, {.lr = 0.3f}));
    else
        usage(("unknown optimizer '" + name + "' (adam, scaltra, lodo, sgd)").c_str());
}

}  // namespace

int main(int argc, char** argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    const Settings settings = parse(argc, argv);
    scaltra::set_threads(1);
    scaltra::data::FashionMnist<S> fm;
    try {
        fm = scaltra::data::load_fashion_mnist<S>(settings.data);
    } catch (const scaltra::Error& e) {
        std::fprintf(stderr, "data_parallel_bench: %s\n", e.what());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const Index examples = std::min(settings.steps * settings.batch, fm.train.size());
    fm.train.inputs.conservativeResize(Eigen::NoChange, examples);
    fm.train.labels.resize(static_cast<std::size_t>(examples));
    scaltra::nn::Mlp<S> model({784, 256, 128, 10}, scaltra::nn::Relu{}, 1);
    scaltra::dist::DataParallelClassifier<S, scaltra::nn::Mlp<S>> data_parallel(model);
    const Vec<S> initial = model.init();
    const scaltra::FitOptions<S> options{.epochs = 1, .batch_size = settings.batch, .seed = 1};
    if (rank == 0) {
        std::vector<double> times;
        Vec<S> g(initial.size());
        const auto batch = fm.train.inputs.leftCols(settings.batch);
        const std::span<const Index> labels(fm.train.labels.data(),
                                            static_cast<std::size_t>(settings.batch));
        for (int i = 0; i < 21; ++i) {
            g.setZero();
            const double start = MPI_Wtime();
            model.loss_and_grad(initial, batch, labels, g);
            if (i > 0)  // the first warms the tape up
                times.push_back(1e3 * (MPI_Wtime() - start));
        }
        std::printf("one batch's loss and gradient: %.2f ms\n", median(times));
    }
    {
        std::vector<double> times;
        Vec<S> g = Vec<S>::Ones(initial.size() + 3);
        scaltra::dist::detail::IdenticalSum<S> sum;
        for (int i = 0; i < 21; ++i) {
            MPI_Barrier(MPI_COMM_WORLD);
            const double start = MPI_Wtime();
            sum(g, MPI_COMM_WORLD);
            if (i > 0)
                times.push_back(1e3 * (MPI_Wtime() - start));
        }
        if (rank == 0)
            std::printf("the sum of %lld floats over the ranks: %.2f ms\n",
                        static_cast<long long>(g.size()), median(times));
    }
    if (rank == 0)
        std::printf("%d ranks, %lld steps of batch %lld, %lld repeats (medians)\n\n%-8s %12s "
                    "%12s %7s %12s %12s %14s %12s %9s\n",
                    ranks, static_cast<long long>(examples / settings.batch),
                    static_cast<long long>(settings.batch),
                    static_cast<long long>(settings.repeats), "", "1 rank st/s",
                    (std::to_string(ranks) + " ranks st/s").c_str(), "ratio", "rel. norm",
                    "max rel.", "allreduced/st", "meta-state", "step ms");

    std::string list = settings.optimizers + ",";
    for (std::size_t at = 0, end; (end = list.find(',', at)) != std::string::npos; at = end + 1) {
        const std::string name = list.substr(at, end - at);
        std::vector<double> alone_rate, shared_rate;
        Vec<S> w_alone, w_shared;
        Index meta_size = 0;
        for (Index r = 0; r < settings.repeats; ++r) {
            if (rank == 0)
                with_optimizer(name, model.layout(), [&](auto opt) {
                    Vec<S> w = initial;
                    const auto result = scaltra::fit(model, opt, w, fm.train, options);
                    alone_rate.push_back(static_cast<double>(result.iterations)
                                         / result.history.back().train_seconds);
                    w_alone = w;
                });
            sleep_at_barrier();
            with_optimizer(name, model.layout(), [&](auto opt) {
                Vec<S> w = initial;
                const auto result = scaltra::fit(data_parallel, opt, w, fm.train, options);
                scaltra::dist::check_state_agreement(opt);
                if constexpr (requires { opt.state().phi; })
                    meta_size = opt.state().phi.size();
                shared_rate.push_back(static_cast<double>(result.iterations)
                                      / result.history.back().train_seconds);
                w_shared = w;
            });
        }
        if (rank == 0) {
            const Vec<S> diff = w_shared - w_alone;
            const S scale = 1e-3f * w_alone.cwiseAbs().maxCoeff();
            const double max_relative = static_cast<double>(
                (diff.cwiseAbs().array() / (w_alone.cwiseAbs().array() + scale)).maxCoeff());
            const double one = median(alone_rate), many = median(shared_rate);
            std::printf("%-8s %12.1f %12.1f %6.2fx %12.2e %12.2e %11.2f MB %9.2f MB %9.2f\n",
                        name.c_str(), one, many, many / one,
                        static_cast<double>(diff.norm() / w_alone.norm()), max_relative,
                        static_cast<double>((initial.size() + 3) * Index(sizeof(S))) / 1e6,
                        static_cast<double>(meta_size * Index(sizeof(S))) / 1e6, 1e3 / one);
            std::fflush(stdout);
        }
    }
    MPI_Finalize();
    return 0;
}
