// A multilayer perceptron over one flat parameter vector. Layer l has a weight
// block "W<l>" (out × in) and a bias block "b<l>" (out × 1) in the model's
// Layout, so per-layer optimizers see its layers. Inputs are features × batch
// (one example per column); hidden layers apply the activation, the last layer
// is linear (logits for softmax cross-entropy, outputs for squared error).
// Gradients come from the autodiff tape; the model keeps its tape, so a model is
// used by one thread at a time and, after the first batch, allocates nothing.
// MlpObjective (below) is a minibatch objective of the model that is also a
// ModelObjective, for APO.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../autodiff/dual.hpp"
#include "../autodiff/hvp.hpp"
#include "../autodiff/ops_elementwise.hpp"
#include "../autodiff/ops_linalg.hpp"
#include "../autodiff/ops_loss.hpp"
#include "../autodiff/ops_shape.hpp"
#include "../autodiff/tape.hpp"
#include "../core/concepts.hpp"
#include "../core/layout.hpp"
#include "../core/rng.hpp"
#include "../core/validate.hpp"

namespace scaltra::nn {

enum class Activation { relu, tanh, sigmoid };

/// Tags, so that `Mlp<float>({784, 256, 10}, nn::Relu{}, seed)` reads as it says.
struct Relu {
    constexpr operator Activation() const { return Activation::relu; }  // NOLINT
};
struct Tanh {
    constexpr operator Activation() const { return Activation::tanh; }  // NOLINT
};
struct Sigmoid {
    constexpr operator Activation() const { return Activation::sigmoid; }  // NOLINT
};

/// Mean loss and accuracy of a model on a labelled set.
struct Evaluation {
    double loss;
    double accuracy;
};

/// Weight initialisation: He (N(0, 2/fan_in), for ReLU) or Xavier/Glorot
/// (U(±√(6/(fan_in + fan_out))), for tanh and sigmoid). Biases start at 0.
enum class Init { automatic, he, xavier };

template <Real S>
class Mlp {
public:
    /// sizes = {inputs, hidden…, outputs}, at least two entries, all positive.
    Mlp(std::vector<Index> sizes, Activation activation, std::uint64_t seed,
        Init init = Init::automatic)
        : sizes_(std::move(sizes)), activation_(activation), seed_(seed), init_(init) {
        if (sizes_.size() < 2)
            throw InvalidArgument(
                "Invalid sizes: an MLP needs at least an input and an output size");
        for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
            detail::require_positive("layer size", sizes_[l]);
            detail::require_positive("layer size", sizes_[l + 1]);
            // concat, not "W" + std::to_string(…): GCC 12 gives a false -Wrestrict
            // on the latter at -O2 and above (GCC bug 105651).
            layout_.add(scaltra::detail::concat("W", l + 1), sizes_[l + 1], sizes_[l]);
            layout_.add(scaltra::detail::concat("b", l + 1), sizes_[l + 1]);
        }
        if (init_ == Init::automatic)
            init_ = activation_ == Activation::relu ? Init::he : Init::xavier;
    }

    const Layout& layout() const { return layout_; }
    Index input_size() const { return sizes_.front(); }
    Index output_size() const { return sizes_.back(); }
    std::size_t layers() const { return sizes_.size() - 1; }

    /// Fresh parameters drawn from the model's seed.
    Vec<S> init() const {
        Rng rng(seed_);
        Vec<S> w = Vec<S>::Zero(layout_.size());
        for (std::size_t l = 0; l < layers(); ++l) {
            const Block& W = layout_[2 * l];
            const double fan_in = static_cast<double>(W.cols),
                         fan_out = static_cast<double>(W.rows);
            for (Index i = W.offset; i < W.offset + W.size(); ++i) {
                w[i] = init_ == Init::he ? static_cast<S>(rng.normal(0.0, std::sqrt(2.0 / fan_in)))
                                         : static_cast<S>(rng.uniform(-1.0, 1.0)
                                                          * std::sqrt(6.0 / (fan_in + fan_out)));
            }
        }
        return w;
    }

    /// Mean softmax cross-entropy of the batch; its gradient is added to grad.
    S loss_and_grad(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                    std::span<const Index> labels, Eigen::Ref<Vec<S>> grad) {
        check(w, inputs, &grad);
        tape_.clear();
        auto loss = ad::softmax_cross_entropy(forward(w, inputs, grad.data()), labels);
        tape_.backward(loss);
        return loss.value()(0, 0);
    }

    /// Mean squared error against targets (outputs × batch); its gradient is added to grad.
    S loss_and_grad(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                    const Eigen::Ref<const Mat<S>>& targets, Eigen::Ref<Vec<S>> grad) {
        check(w, inputs, &grad);
        check_targets(inputs, targets);
        tape_.clear();
        auto loss = ad::mse(forward(w, inputs, grad.data()), tape_.constant(targets));
        tape_.backward(loss);
        return loss.value()(0, 0);
    }

    /// The network's outputs (logits) for inputs, written into out (outputs × batch).
    void predict(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                 Eigen::Ref<Mat<S>> out) {
        check(w, inputs, nullptr);
        if (out.rows() != output_size() || out.cols() != inputs.cols())
            throw DimensionMismatch(scaltra::detail::concat("Mlp: predict into ", out.rows(), "x",
                                                            out.cols(), ", need ", output_size(),
                                                            "x", inputs.cols()));
        tape_.clear();
        out = forward(w, inputs, nullptr).value();
    }

    /// ρ(f(inputs; w), reference) (see Discrepancy); its gradient with respect to w,
    /// the reference held constant, is added to grad.
    S discrepancy_and_grad(const Eigen::Ref<const Vec<S>>& w,
                           const Eigen::Ref<const Mat<S>>& inputs,
                           const Eigen::Ref<const Mat<S>>& reference, Discrepancy rho,
                           Eigen::Ref<Vec<S>> grad) {
        check(w, inputs, &grad);
        if (reference.rows() != output_size() || reference.cols() != inputs.cols())
            throw DimensionMismatch(scaltra::detail::concat(
                "Mlp: reference outputs are ", reference.rows(), "x", reference.cols(),
                ", the outputs ", output_size(), "x", inputs.cols()));
        tape_.clear();
        const ad::Var<S> out = forward(w, inputs, grad.data());
        const ad::Var<S> r = tape_.constant(reference);
        auto loss = rho == Discrepancy::squared_error ? ad::mse(out, r) : ad::kl_softmax(r, out);
        tape_.backward(loss);
        return loss.value()(0, 0);
    }

    /// ρ(f(inputs; u), f(inputs; w)), the outputs at w held constant (APO's
    /// function-space term, with inputs B′); its gradient with respect to u is added
    /// to grad. The outputs at w go into a buffer the model keeps, so that after the
    /// first call of a batch size nothing allocates.
    S output_discrepancy(const Eigen::Ref<const Vec<S>>& u, const Eigen::Ref<const Vec<S>>& w,
                         const Eigen::Ref<const Mat<S>>& inputs, Discrepancy rho,
                         Eigen::Ref<Vec<S>> grad) {
        check(w, inputs, nullptr);
        reference_.resize(output_size(), inputs.cols());
        predict(w, inputs, reference_);
        return discrepancy_and_grad(u, inputs, reference_, rho, grad);
    }

    /// hv = ∇²L(w)·v of the mean squared error L against targets, exact (forward
    /// over reverse on the model's second tape, autodiff/hvp.hpp; DCO's
    /// meta-gradients through several steps). After the first call of a batch size
    /// nothing allocates.
    void hessian_vector_product(const Eigen::Ref<const Vec<S>>& w,
                                const Eigen::Ref<const Mat<S>>& inputs,
                                const Eigen::Ref<const Mat<S>>& targets,
                                const Eigen::Ref<const Vec<S>>& v, Eigen::Ref<Vec<S>> hv) {
        check(w, inputs, nullptr);
        check_targets(inputs, targets);
        detail::require_size("Mlp direction", v.size(), layout_.size());
        detail::require_size("Mlp Hessian-vector product", hv.size(), layout_.size());
        using D = ad::Dual<S>;
        dual_inputs_ = inputs.template cast<D>();
        dual_targets_ = targets.template cast<D>();
        hvp_gradient_.resize(layout_.size());
        auto record = [&](const ad::Var<D>& x) {
            ad::Tape<D>& t = x.tape();
            auto weight = [&](const Block& b) {
                return ad::reshape(ad::slice(x, b.offset, 0, b.size(), 1), b.rows, b.cols);
            };
            const ad::Var<D> out =
                network(t.leaf(dual_inputs_.data(), inputs.rows(), inputs.cols()), weight);
            return ad::mse(out, t.leaf(dual_targets_.data(), targets.rows(), targets.cols()));
        };
        ad::hessian_vector_product<S>(dual_tape_, record, w, v, hvp_gradient_, hv);
    }

    /// Mean softmax cross-entropy and accuracy (the fraction of examples whose
    /// largest output is their label) on a whole set, `chunk` examples at a time;
    /// no gradient is taken.
    Evaluation evaluate(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                        std::span<const Index> labels, Index chunk = 1000) {
        check(w, inputs, nullptr);
        detail::require_positive("chunk", chunk);
        if (static_cast<Index>(labels.size()) != inputs.cols())
            throw DimensionMismatch(scaltra::detail::concat("Mlp: ", labels.size(), " labels for ",
                                                            inputs.cols(), " examples"));
        double total_loss = 0;
        Index correct = 0;
        for (Index j = 0; j < inputs.cols(); j += chunk) {
            const Index n = std::min(chunk, inputs.cols() - j);
            const auto chunk_labels =
                labels.subspan(static_cast<std::size_t>(j), static_cast<std::size_t>(n));
            tape_.clear();
            const ad::Var<S> out = forward(w, inputs.middleCols(j, n), nullptr);
            total_loss +=
                static_cast<double>(ad::softmax_cross_entropy(out, chunk_labels).value()(0, 0))
                * static_cast<double>(n);
            const auto logits = out.value();
            for (Index k = 0; k < n; ++k) {
                Index best;
                logits.col(k).maxCoeff(&best);
                correct += best == chunk_labels[static_cast<std::size_t>(k)];
            }
        }
        const auto count = static_cast<double>(inputs.cols());
        return {total_loss / count, static_cast<double>(correct) / count};
    }

    /// The fraction of examples whose largest output is their label.
    double accuracy(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                    std::span<const Index> labels, Index chunk = 1000) {
        return evaluate(w, inputs, labels, chunk).accuracy;
    }

private:
    void check(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
               const Eigen::Ref<Vec<S>>* grad) const {
        detail::require_size("Mlp parameters", w.size(), layout_.size());
        if (grad != nullptr)
            detail::require_size("Mlp gradient", grad->size(), layout_.size());
        if (inputs.rows() != input_size())
            throw DimensionMismatch(scaltra::detail::concat(
                "Mlp: inputs have ", inputs.rows(), " features, the model takes ", input_size()));
        if (inputs.cols() == 0)
            throw InvalidArgument("Mlp: no examples (the batch or set is empty)");
    }

    void check_targets(const Eigen::Ref<const Mat<S>>& inputs,
                       const Eigen::Ref<const Mat<S>>& targets) const {
        if (targets.rows() != output_size() || targets.cols() != inputs.cols())
            throw DimensionMismatch(scaltra::detail::concat("Mlp: targets are ", targets.rows(),
                                                            "x", targets.cols(), ", the outputs ",
                                                            output_size(), "x", inputs.cols()));
    }

    /// Records the network on the tape; weights are leaves viewing w, their
    /// gradients landing in `grad` (none when grad is null).
    ad::Var<S> forward(const Eigen::Ref<const Vec<S>>& w, const Eigen::Ref<const Mat<S>>& inputs,
                       S* grad) {
        const ad::Var<S> h = inputs.outerStride() == inputs.rows()
                                 ? tape_.leaf(inputs.data(), inputs.rows(), inputs.cols())
                                 : tape_.constant(inputs);
        return network(h, [&](const Block& b) {
            return tape_.leaf(w.data() + b.offset, b.rows, b.cols, grad ? grad + b.offset : nullptr);
        });
    }

    /// The layers on input h, on any tape; weight(block) gives a parameter block's node.
    template <class T, class Weight>
    ad::Var<T> network(ad::Var<T> h, Weight&& weight) const {
        for (std::size_t l = 0; l < layers(); ++l) {
            h = ad::matmul(weight(layout_[2 * l]), h) + weight(layout_[2 * l + 1]);
            if (l + 1 < layers())
                h = activate(h);
        }
        return h;
    }

    template <class T>
    ad::Var<T> activate(const ad::Var<T>& x) const {
        switch (activation_) {
            case Activation::relu:
                return ad::relu(x);
            case Activation::tanh:
                return ad::tanh(x);
            default:
                return ad::sigmoid(x);
        }
    }

    std::vector<Index> sizes_;
    Activation activation_;
    std::uint64_t seed_;
    Init init_;
    Layout layout_;
    ad::Tape<S> tape_;
    Mat<S> reference_;  // output_discrepancy's f(inputs; w)
    ad::Tape<ad::Dual<S>> dual_tape_;  // hessian_vector_product's
    Mat<ad::Dual<S>> dual_inputs_, dual_targets_;
    Vec<S> hvp_gradient_;
};

/// A minibatch objective of an Mlp that is also a ModelObjective (APO's
/// function-space term): the mean loss on (inputs, labels), softmax
/// cross-entropy, or on (inputs, targets), squared error; and the discrepancy of
/// the outputs at two parameter vectors on `probe`, the inputs B′. It views the
/// model and the matrices, which must outlive it.
template <Real S>
class MlpObjective {
public:
    MlpObjective(Mlp<S>& model, const Eigen::Ref<const Mat<S>>& inputs,
                 std::span<const Index> labels, const Eigen::Ref<const Mat<S>>& probe)
        : model_(model), inputs_(inputs), probe_(probe), labels_(labels) {}
    MlpObjective(Mlp<S>& model, const Eigen::Ref<const Mat<S>>& inputs,
                 const Eigen::Ref<const Mat<S>>& targets, const Eigen::Ref<const Mat<S>>& probe)
        : model_(model), inputs_(inputs), probe_(probe), targets_(std::in_place, targets) {}

    S operator()(const Eigen::Ref<const Vec<S>>& w, Eigen::Ref<Vec<S>> grad) {
        return targets_ ? model_.loss_and_grad(w, inputs_, *targets_, grad)
                        : model_.loss_and_grad(w, inputs_, labels_, grad);
    }

    S discrepancy(const Eigen::Ref<const Vec<S>>& u, const Eigen::Ref<const Vec<S>>& w,
                  Discrepancy rho, Eigen::Ref<Vec<S>> grad) {
        return model_.output_discrepancy(u, w, probe_, rho, grad);
    }

private:
    Mlp<S>& model_;
    Eigen::Ref<const Mat<S>> inputs_, probe_;
    std::span<const Index> labels_;
    std::optional<Eigen::Ref<const Mat<S>>> targets_;  // a regression's; none for a classifier
};

}  // namespace scaltra::nn
