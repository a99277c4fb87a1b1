// No step allocates after warm-up: the classic optimizers, the tape, the MLP and
// the minibatches (the learned optimizers: alloc_learned_test.cpp and
// alloc_meta_test.cpp). Global operator new is replaced here by a counting one;
// alloc_counter.hpp counts Eigen's own allocations.
#include "alloc_counter.hpp"

#include <new>
#include <vector>

#include <scaltra/autodiff.hpp>
#include <scaltra/data/minibatches.hpp>
#include <scaltra/nn/mlp.hpp>
#include <scaltra/optim.hpp>
#include <scaltra/problems.hpp>

#include <catch2/catch.hpp>

using alloc_counter::allocations;
using alloc_counter::allocations_during;
using alloc_counter::allocations_per_steps;

// Under AddressSanitizer the replacement would fight ASan's own operator new, so
// there only Eigen's allocations are counted; the plain build counts both.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool counts_operator_new = false;
#else
constexpr bool counts_operator_new = true;

void* operator new(std::size_t size) {
    ++allocations;
    if (void* p = std::malloc(size == 0 ? 1 : size))
        return p;
    throw std::bad_alloc();
}
// The replacement pair is malloc/free, which GCC cannot see through.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
#pragma GCC diagnostic pop
#endif

TEMPLATE_TEST_CASE("no heap allocation per step after the first", "[optim][alloc]", float, double) {
    using S = TestType;
    // The counters do count: an Eigen vector, and a std container.
    const long sanity = allocations.load();
    Eigen::internal::set_is_malloc_allowed(false);
    { scaltra::Vec<S> v(10); }
    Eigen::internal::set_is_malloc_allowed(true);
    { std::vector<int> v(10); }
    REQUIRE(allocations.load() == sanity + (counts_operator_new ? 2 : 1));

    scaltra::Sgd<S> sgd(1000, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = true});
    scaltra::Adam<S> adam(1000, {.weight_decay = 0.1, .amsgrad = true});
    scaltra::AdamW<S> adamw(1000, {.lr = scaltra::schedule::cosine(0.1, 100)});
    scaltra::RmsProp<S> rmsprop(1000, {.momentum = 0.9, .centered = true});
    scaltra::AdaGrad<S> adagrad(1000, {.lr_decay = 0.01});
    CHECK(allocations_per_steps(sgd, 20) == 0);
    CHECK(allocations_per_steps(adam, 20) == 0);
    CHECK(allocations_per_steps(adamw, 20) == 0);
    CHECK(allocations_per_steps(rmsprop, 20) == 0);
    CHECK(allocations_per_steps(adagrad, 20) == 0);
}

TEMPLATE_TEST_CASE("an MLP forward and backward on the tape allocates nothing after the first",
                   "[autodiff][alloc]", float, double) {
    using S = TestType;
    namespace ad = scaltra::ad;
    // 784-256-128-10 with ReLU and softmax cross-entropy, batch 128.
    scaltra::Layout layout;
    layout.add("W1", 256, 784).add("b1", 256).add("W2", 128, 256).add("b2", 128);
    layout.add("W3", 10, 128).add("b3", 10);
    scaltra::Rng rng(3);
    const scaltra::Vec<S> w = rng.normal_vector<S>(layout.size(), S(0), S(0.05));
    scaltra::Vec<S> grad = scaltra::Vec<S>::Zero(layout.size());
    const scaltra::Mat<S> X = scaltra::Mat<S>::Random(784, 128);
    std::vector<scaltra::Index> labels(128);
    for (auto& l : labels)
        l = static_cast<scaltra::Index>(rng.below(10));

    ad::Tape<S> tape;
    auto iteration = [&] {
        tape.clear();
        auto layer = [&](ad::Var<S> in, const char* W, const char* b) {
            return ad::matmul(tape.leaf(w, grad, layout.at(W)), in)
                   + tape.leaf(w, grad, layout.at(b));
        };
        auto h1 = ad::relu(layer(tape.leaf(X.data(), 784, 128), "W1", "b1"));
        auto h2 = ad::relu(layer(h1, "W2", "b2"));
        auto loss = ad::softmax_cross_entropy(layer(h2, "W3", "b3"), labels);
        tape.backward(loss);
        return loss.value()(0, 0);
    };
    const S first = iteration();
    S later = 0;
    CHECK(allocations_during([&] {
              for (int t = 0; t < 3; ++t)
                  later = iteration();
          })
          == 0);
    CHECK(later == first);  // the same computation each time
    CHECK(grad.allFinite());
}

TEST_CASE("repeated Hessian-vector products allocate nothing after the first",
          "[autodiff][alloc]") {
    namespace ad = scaltra::ad;
    scaltra::Rng rng(4);
    const scaltra::Index n = 64;
    const scaltra::Mat<double> A = scaltra::Mat<double>::Random(48, n);
    const scaltra::Mat<ad::Dual<double>> Ad = A.cast<ad::Dual<double>>();
    auto record = [&](ad::Var<ad::Dual<double>> x) {
        return ad::sum(ad::softplus(ad::matmul(x.tape().constant(Ad), x)));
    };
    const scaltra::Vec<double> x = rng.normal_vector<double>(n), v = rng.normal_vector<double>(n);
    scaltra::Vec<double> g(n), hv(n);
    ad::Tape<ad::Dual<double>> tape;
    ad::hessian_vector_product<double>(tape, record, x, v, g, hv);
    CHECK(allocations_during([&] { ad::hessian_vector_product<double>(tape, record, x, v, g, hv); })
          == 0);
}

TEST_CASE("training an Mlp on minibatches allocates nothing after the first batch",
          "[nn][data][alloc]") {
    scaltra::data::LabelledSet<float> set{scaltra::Mat<float>::Random(20, 100),
                                          std::vector<scaltra::Index>(100)};
    for (std::size_t j = 0; j < 100; ++j)
        set.labels[j] = static_cast<scaltra::Index>(j % 3);
    scaltra::nn::Mlp<float> model({20, 16, 3}, scaltra::nn::Tanh{}, 1);
    scaltra::Vec<float> w = model.init();
    scaltra::Adam<float> opt(model.layout());
    scaltra::data::Minibatches<float> batches(set, 32, 2);
    auto train_epoch = [&] {
        for (scaltra::Index k = 0; k < batches.batches_per_epoch(); ++k) {
            auto batch = batches.batch(k);
            opt.step(w, [&](const auto& x, auto& grad) {
                return model.loss_and_grad(x, batch.inputs, batch.labels, grad);
            });
        }
        batches.next_epoch();
    };
    train_epoch();  // sizes every buffer, the last (smaller) batch included
    CHECK(allocations_during([&] {
              train_epoch();
              train_epoch();
          })
          == 0);
}

TEST_CASE("evaluating an Mlp and its output discrepancy allocates nothing after the first call",
          "[nn][alloc]") {
    const scaltra::Mat<float> X = scaltra::Mat<float>::Random(20, 250);
    std::vector<scaltra::Index> labels(250);
    for (std::size_t j = 0; j < labels.size(); ++j)
        labels[j] = static_cast<scaltra::Index>(j % 3);
    scaltra::nn::Mlp<float> model({20, 16, 3}, scaltra::nn::Relu{}, 1);
    const scaltra::Vec<float> w = model.init();
    scaltra::Vec<float> g = scaltra::Vec<float>::Zero(w.size());
    scaltra::Mat<float> reference(3, 250);
    model.predict(w, X, reference);
    auto both = [&] {
        model.evaluate(w, X, labels, 100);  // chunks of 100, 100 and 50
        model.discrepancy_and_grad(w, X, reference, scaltra::Discrepancy::kl_softmax, g);
    };
    both();
    CHECK(allocations_during([&] {
              both();
              both();
          })
          == 0);
}
