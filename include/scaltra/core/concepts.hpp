// The two concepts every scaltra component speaks.
//
// Objective<F, S>: `S f(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad)`
// returns the loss at x and writes its gradient into grad (same size as x; the
// optimizers hand it over zeroed). A minibatch objective closes over its batch.
//
// Optimizer<O>: `S opt.step(Eigen::Ref<Vec<S>> x, f)` updates x in place and returns
// the loss seen at the incoming x; `reset()`, `name()`, `save(std::ostream&)`,
// `load(std::istream&)`, and `state()`, a StateAggregate readable as data. A step
// that throws — bad input, a non-finite value, or an exception from f — leaves x
// and the state as they were.
//
// GradientOptimizer<O>: an Optimizer that also takes a ready gradient,
// `opt.update(x, g)`; what a learned optimizer needs of its meta-optimizer.
//
// ModelObjective<F, S>: an Objective over a model's parameters that can also
// compare the model's outputs at two parameter vectors on a second batch of
// inputs B′ (APO's function-space term):
// `S f.discrepancy(u, w, rho, grad)` returns the mean over B′ of ρ(f(x̃; u), f(x̃; w))
// and adds its gradient with respect to u into grad, f(x̃; w) held constant.
//
// MetaTask<T, S>: one task of a task distribution, for meta-training (DCO's
// Algorithm 1): `task.train_loss(x, grad)` and `task.validation_loss(x, grad)`,
// each an Objective's call (loss returned, gradient written), and
// `task.initial_point()`, the fixed point every run on the task starts from.
// SecondOrderTask<T, S> adds `task.hessian_vector_product(x, v, hv)`, hv = ∇²l(x)·v
// of the training loss, which meta-gradients through more than one inner step
// need. TaskSet<Ts, S>: `tasks.size()` and `tasks[i]`, a MetaTask (a std::vector
// of tasks is one).
#pragma once

#include <concepts>
#include <cstddef>
#include <istream>
#include <ostream>
#include <string_view>
#include <type_traits>

#include "state_io.hpp"
#include "types.hpp"

namespace scaltra {

template <class F, class S>
concept Objective = Real<S> && requires(F& f, const Eigen::Ref<const Vec<S>>& x,
                                        Eigen::Ref<Vec<S>>& grad) {
    { f(x, grad) } -> std::convertible_to<S>;
};

namespace detail {
/// The simplest objective, used to state the Optimizer concept.
template <class S>
struct ObjectiveArchetype {
    S operator()(const Eigen::Ref<const Vec<S>>& x, Eigen::Ref<Vec<S>> grad) const {
        grad = x;
        return S(0);
    }
};
}  // namespace detail

/// An output discrepancy ρ(f, r) against reference outputs r: the mean over all
/// elements of (f − r)² (regression), or the mean over examples of
/// KL(softmax(r) ‖ softmax(f)) (classification).
enum class Discrepancy { squared_error, kl_softmax };

template <class F, class S>
concept ModelObjective = Objective<F, S> && requires(F& f, const Eigen::Ref<const Vec<S>>& u,
                                                     const Eigen::Ref<const Vec<S>>& w,
                                                     Discrepancy rho, Eigen::Ref<Vec<S>>& grad) {
    { f.discrepancy(u, w, rho, grad) } -> std::convertible_to<S>;
};

template <class T, class S>
concept MetaTask = Real<S> && requires(T& task, const Eigen::Ref<const Vec<S>>& x,
                                       Eigen::Ref<Vec<S>>& grad) {
    { task.train_loss(x, grad) } -> std::convertible_to<S>;
    { task.validation_loss(x, grad) } -> std::convertible_to<S>;
    { task.initial_point() } -> std::convertible_to<Eigen::Ref<const Vec<S>>>;
};

template <class T, class S>
concept SecondOrderTask = MetaTask<T, S> && requires(T& task, const Eigen::Ref<const Vec<S>>& x,
                                                     const Eigen::Ref<const Vec<S>>& v,
                                                     Eigen::Ref<Vec<S>>& hv) {
    task.hessian_vector_product(x, v, hv);
};

template <class Ts, class S>
concept TaskSet = requires(Ts& tasks, std::size_t i) {
    { tasks.size() } -> std::convertible_to<std::size_t>;
    requires MetaTask<std::remove_cvref_t<decltype(tasks[i])>, S>;
};

template <class O>
concept Optimizer = requires(O& opt, const O& copt, Eigen::Ref<Vec<typename O::Scalar>>& x,
                             detail::ObjectiveArchetype<typename O::Scalar>& f, std::ostream& out,
                             std::istream& in) {
    requires Real<typename O::Scalar>;
    { opt.step(x, f) } -> std::same_as<typename O::Scalar>;
    opt.reset();
    { copt.name() } -> std::convertible_to<std::string_view>;
    copt.save(out);
    opt.load(in);
    requires StateAggregate<std::remove_cvref_t<decltype(copt.state())>>;
};

template <class O>
concept GradientOptimizer =
    Optimizer<O> && requires(O& opt, Eigen::Ref<Vec<typename O::Scalar>>& x,
                             const Eigen::Ref<const Vec<typename O::Scalar>>& g) {
    opt.update(x, g);
};

}  // namespace scaltra
