// nn/: the MLP's gradients against central differences for every activation and
// both losses and both output discrepancies, its initialisation, predict,
// evaluate and accuracy, and bad input.
#include <span>
#include <vector>

#include <scaltra/core/rng.hpp>
#include <scaltra/nn.hpp>

#include <catch2/catch.hpp>

using scaltra::Index;
using scaltra::Mat;
using scaltra::Vec;
namespace nn = scaltra::nn;

TEST_CASE("MLP gradients match central differences", "[nn]") {
    scaltra::Rng rng(1);
    const Mat<double> X = Mat<double>::Random(5, 7);
    const std::vector<Index> labels{0, 2, 1, 1, 0, 2, 2};
    const Mat<double> targets = Mat<double>::Random(3, 7);
    for (nn::Activation act : {nn::Activation::relu, nn::Activation::tanh, nn::Activation::sigmoid})
        for (bool classify : {true, false}) {
            INFO("activation " << static_cast<int>(act) << ", classify " << classify);
            nn::Mlp<double> model({5, 6, 4, 3}, act, 3);
            const Vec<double> w =
                model.init() + 0.01 * rng.normal_vector<double>(model.layout().size());
            auto loss = [&](const Vec<double>& at, Vec<double>& g) {
                g.setZero();
                return classify ? model.loss_and_grad(at, X, labels, g)
                                : model.loss_and_grad(at, X, targets, g);
            };
            Vec<double> g(w.size()), scratch(w.size());
            loss(w, g);
            double worst = 0;
            for (Index i = 0; i < w.size(); ++i) {
                Vec<double> up = w, down = w;
                up[i] += 1e-6;
                down[i] -= 1e-6;
                const double fd = (loss(up, scratch) - loss(down, scratch)) / 2e-6;
                worst = std::max(worst, std::abs(fd - g[i]) / std::max(1.0, std::abs(fd)));
            }
            CHECK(worst < 1e-6);
        }
}

TEST_CASE("MLP layout, initialisation, predict and accuracy", "[nn]") {
    nn::Mlp<double> relu_model({400, 300, 10}, nn::Relu{}, 7);
    const auto& layout = relu_model.layout();
    CHECK(layout.size() == 400 * 300 + 300 + 300 * 10 + 10);
    CHECK(layout.at("W1").rows == 300);
    CHECK(layout.at("W1").cols == 400);
    CHECK(layout.at("b2").rows == 10);
    const Vec<double> w = relu_model.init();
    CHECK(w == relu_model.init());  // the seed decides
    const auto W1 = scaltra::block_view(w, layout.at("W1"));
    const double variance = W1.array().square().mean();
    CHECK(variance == Approx(2.0 / 400).epsilon(0.02));  // He
    CHECK(scaltra::block_view(w, layout.at("b1")).isZero());

    nn::Mlp<double> tanh_model({400, 300, 10}, nn::Tanh{}, 7);
    const Vec<double> wt = tanh_model.init();
    const double bound = std::sqrt(6.0 / 700);
    const auto W1t = scaltra::block_view(wt, layout.at("W1"));
    CHECK(W1t.maxCoeff() <= bound);
    CHECK(W1t.minCoeff() >= -bound);
    CHECK(W1t.array().square().mean() == Approx(bound * bound / 3).epsilon(0.02));  // Xavier

    // predict against a direct Eigen forward pass, and accuracy from it.
    nn::Mlp<double> small({3, 4, 2}, nn::Sigmoid{}, 2);
    const Vec<double> ws = small.init();
    const Mat<double> X = Mat<double>::Random(3, 9);
    Mat<double> out(2, 9);
    small.predict(ws, X, out);
    const auto& L = small.layout();
    const Mat<double> h = (1.0
                           / (1.0
                              + (-((scaltra::block_view(ws, L.at("W1")) * X).colwise()
                                   + scaltra::block_view(ws, L.at("b1")).col(0))
                                      .array())
                                    .exp()))
                              .matrix();
    const Mat<double> expected = (scaltra::block_view(ws, L.at("W2")) * h).colwise()
                                 + scaltra::block_view(ws, L.at("b2")).col(0);
    CHECK(out.isApprox(expected));
    std::vector<Index> labels(9);
    for (Index j = 0; j < 9; ++j)
        out.col(j).maxCoeff(&labels[static_cast<std::size_t>(j)]);
    CHECK(small.accuracy(ws, X, labels, 4) == 1.0);
    labels[0] = 1 - labels[0];
    CHECK(small.accuracy(ws, X, labels, 4) == Approx(8.0 / 9));
    // evaluate's loss over chunks is the whole set's mean cross-entropy.
    Vec<double> unused = Vec<double>::Zero(ws.size());
    const nn::Evaluation e = small.evaluate(ws, X, labels, 4);
    CHECK(e.loss == Approx(small.loss_and_grad(ws, X, labels, unused)).epsilon(1e-12));
    CHECK(e.accuracy == Approx(8.0 / 9));
    CHECK_THROWS_AS(small.evaluate(ws, X.leftCols(0), std::span<const Index>()),
                    scaltra::InvalidArgument);
}

TEST_CASE("MLP output discrepancy: value and gradient against central differences", "[nn]") {
    scaltra::Rng rng(4);
    const Mat<double> X = Mat<double>::Random(5, 6);
    nn::Mlp<double> model({5, 7, 3}, nn::Tanh{}, 2);
    const Vec<double> w0 = model.init();
    Mat<double> reference(3, 6);
    model.predict(w0, X, reference);  // f(x̃; w₀), held constant as in APO
    const Vec<double> w = w0 + 0.1 * rng.normal_vector<double>(w0.size());
    Mat<double> out(3, 6);
    model.predict(w, X, out);
    for (scaltra::Discrepancy rho :
         {scaltra::Discrepancy::squared_error, scaltra::Discrepancy::kl_softmax}) {
        INFO("discrepancy " << static_cast<int>(rho));
        // The value against a direct formula.
        double expected = 0;
        if (rho == scaltra::Discrepancy::squared_error) {
            expected = (out - reference).squaredNorm() / 18.0;
        } else {
            for (Index j = 0; j < 6; ++j) {
                const Vec<double> p =
                    reference.col(j).array().exp() / reference.col(j).array().exp().sum();
                const Vec<double> q = out.col(j).array().exp() / out.col(j).array().exp().sum();
                expected += (p.array() * (p.array() / q.array()).log()).sum() / 6.0;
            }
        }
        Vec<double> g = Vec<double>::Zero(w.size()), scratch(w.size());
        CHECK(model.discrepancy_and_grad(w, X, reference, rho, g) == Approx(expected));
        auto f = [&](const Vec<double>& at) {
            scratch.setZero();
            return model.discrepancy_and_grad(at, X, reference, rho, scratch);
        };
        double worst = 0;
        for (Index i = 0; i < w.size(); ++i) {
            Vec<double> up = w, down = w;
            up[i] += 1e-6;
            down[i] -= 1e-6;
            const double fd = (f(up) - f(down)) / 2e-6;
            worst = std::max(worst, std::abs(fd - g[i]) / std::max(1.0, std::abs(fd)));
        }
        CHECK(worst < 1e-7);
        // At w₀ the outputs equal the reference: zero discrepancy and gradient.
        Vec<double> g0 = Vec<double>::Zero(w.size());
        CHECK(model.discrepancy_and_grad(w0, X, reference, rho, g0) == Approx(0).margin(1e-15));
        CHECK(g0.norm() < 1e-12);
    }
    Vec<double> g = Vec<double>::Zero(w.size());
    CHECK_THROWS_AS(model.discrepancy_and_grad(w, X, reference.leftCols(5),
                                               scaltra::Discrepancy::kl_softmax, g),
                    scaltra::DimensionMismatch);
}

TEST_CASE("MLP bad input throws and names the problem", "[nn]") {
    CHECK_THROWS_AS(nn::Mlp<float>({5}, nn::Relu{}, 1), scaltra::InvalidArgument);
    CHECK_THROWS_AS(nn::Mlp<float>({5, 0, 2}, nn::Relu{}, 1), scaltra::InvalidArgument);
    nn::Mlp<float> model({4, 3, 2}, nn::Relu{}, 1);
    const Vec<float> w = model.init();
    Vec<float> g = Vec<float>::Zero(w.size());
    const Mat<float> X = Mat<float>::Random(4, 5);
    const std::vector<Index> labels{0, 1, 0, 1, 1};
    CHECK_THROWS_WITH(model.loss_and_grad(w.head(3), X, labels, g),
                      Catch::Contains("Mlp parameters has 3 elements"));
    CHECK_THROWS_WITH(model.loss_and_grad(w, Mat<float>::Random(3, 5), labels, g),
                      Catch::Contains("inputs have 3 features"));
    const std::vector<Index> short_labels{0, 1};
    CHECK_THROWS_AS(model.loss_and_grad(w, X, short_labels, g), scaltra::DimensionMismatch);
    CHECK_THROWS_AS(model.loss_and_grad(w, X, Mat<float>::Random(2, 4), g),
                    scaltra::DimensionMismatch);
    // An empty batch, contiguous or a strided view, would be a 0/0 loss.
    const Mat<float> none(4, 0);
    CHECK_THROWS_WITH(model.loss_and_grad(w, none, std::span<const Index>(), g),
                      Catch::Contains("no examples"));
    const Mat<float> wide = Mat<float>::Random(8, 5);
    CHECK_THROWS_WITH(model.loss_and_grad(w, wide.topLeftCorner(4, 0), std::span<const Index>(), g),
                      Catch::Contains("no examples"));
    CHECK(g.isZero());  // nothing was accumulated by the refused calls

    scaltra::ad::Tape<float> tape;
    const auto logits = tape.constant(Mat<float>(3, 0));
    CHECK_THROWS_WITH(scaltra::ad::softmax_cross_entropy(logits, std::span<const Index>()),
                      Catch::Contains("the batch is empty"));
    CHECK_THROWS_AS(scaltra::ad::mse(logits, logits), scaltra::InvalidArgument);
    CHECK_THROWS_AS(scaltra::ad::kl_softmax(logits, logits), scaltra::InvalidArgument);
}
