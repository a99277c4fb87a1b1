// A regression task of the DCO experiments (Beverton–Holt, smooth interpolation:
// data/synthetic.hpp) fitted by an MLP, as a meta-training task: a
// SecondOrderTask (core/concepts.hpp) whose losses are the mean squared errors
// on the task's training and validation sets, started from the model's
// initialisation (the same for every task built with the same seed), with exact
// Hessian-vector products from the model.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "../data/synthetic.hpp"
#include "../nn/mlp.hpp"

namespace scaltra {

template <Real S>
class MlpRegressionTask {
public:
    /// The model of `sizes` (inputs first) with `activation`, its initial
    /// parameters drawn from init_seed.
    MlpRegressionTask(data::RegressionTask<S> task, std::vector<Index> sizes,
                      nn::Activation activation, std::uint64_t init_seed)
        : data_(std::move(task)), model_(std::move(sizes), activation, init_seed) {
        for (const auto* set : {&data_.train, &data_.validation})
            if (set->inputs.rows() != model_.input_size()
                || set->targets.rows() != model_.output_size())
                throw DimensionMismatch(detail::concat(
                    "MlpRegressionTask: the data has ", set->inputs.rows(), " inputs and ",
                    set->targets.rows(), " outputs, the model ", model_.input_size(), " and ",
                    model_.output_size()));
        start_ = model_.init();
    }

    S train_loss(const Eigen::Ref<const Vec<S>>& w, Eigen::Ref<Vec<S>> grad) {
        return model_.loss_and_grad(w, data_.train.inputs, data_.train.targets, grad);
    }
    S validation_loss(const Eigen::Ref<const Vec<S>>& w, Eigen::Ref<Vec<S>> grad) {
        return model_.loss_and_grad(w, data_.validation.inputs, data_.validation.targets, grad);
    }
    const Vec<S>& initial_point() const { return start_; }
    void hessian_vector_product(const Eigen::Ref<const Vec<S>>& w,
                                const Eigen::Ref<const Vec<S>>& v, Eigen::Ref<Vec<S>> hv) {
        model_.hessian_vector_product(w, data_.train.inputs, data_.train.targets, v, hv);
    }

    const data::RegressionTask<S>& data() const { return data_; }
    nn::Mlp<S>& model() { return model_; }
    const Layout& layout() const { return model_.layout(); }

private:
    data::RegressionTask<S> data_;
    nn::Mlp<S> model_;
    Vec<S> start_;
};

}  // namespace scaltra
