// The optimizer configurations every cross-optimizer suite runs over (the
// conformance suite, the fault-injection and clipping properties): how to build
// each one, in float and double, with a learning rate that converges on the
// suite's problems, and which settings it must reject.
#pragma once

#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <scaltra/optim.hpp>

namespace testing {

using scaltra::Index;
using scaltra::NonFinitePolicy;
using scaltra::Vec;

template <class S>
struct SgdCase {
    using Opt = scaltra::Sgd<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.2, .momentum = 0.5, .nesterov = true, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"momentum",
                 [] {
                     Opt(2, {.momentum = -0.1});
                 }},
                {"dampening",
                 [] {
                     Opt(2, {.dampening = 2});
                 }},
                {"weight_decay",
                 [] {
                     Opt(2, {.weight_decay = -1});
                 }},
                {"nesterov",
                 [] {
                     Opt(2, {.momentum = 0, .nesterov = true});
                 }},
                {"nesterov", [] {
                     Opt(2, {.momentum = 0.9, .dampening = 0.1, .nesterov = true});
                 }}};
    }
};

template <class S>
struct AdamCase {
    using Opt = scaltra::Adam<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.05, .amsgrad = true, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -0.1});
                 }},
                {"beta1",
                 [] {
                     Opt(2, {.beta1 = 1});
                 }},
                {"beta2",
                 [] {
                     Opt(2, {.beta2 = -0.5});
                 }},
                {"eps",
                 [] {
                     Opt(2, {.eps = 0});  // a zero gradient coordinate would give 0/0
                 }},
                {"weight_decay", [] {
                     Opt(2, {.weight_decay = -1});
                 }}};
    }
};

template <class S>
struct AdamWCase {
    using Opt = scaltra::AdamW<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = scaltra::schedule::cosine(0.05, 3000),
                       .weight_decay = 1e-3,
                       .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"beta1",
                 [] {
                     Opt(2, {.beta1 = S(NAN)});
                 }},
                {"weight_decay", [] {
                     Opt(2, {.weight_decay = -1});
                 }}};
    }
};

template <class S>
struct RmsPropCase {
    using Opt = scaltra::RmsProp<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = scaltra::schedule::exponential(0.01, 0.999),
                       .momentum = 0.5,
                       .centered = true,
                       .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"alpha",
                 [] {
                     Opt(2, {.alpha = 1.5});
                 }},
                {"eps",
                 [] {
                     Opt(2, {.eps = 0});
                 }},
                {"weight_decay",
                 [] {
                     Opt(2, {.weight_decay = -1});
                 }},
                {"momentum", [] {
                     Opt(2, {.momentum = -1});
                 }}};
    }
};

template <class S>
struct AdaGradCase {
    using Opt = scaltra::AdaGrad<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = scaltra::schedule::linear_warmup(10, 0.5), .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"lr_decay",
                 [] {
                     Opt(2, {.lr_decay = -1});
                 }},
                {"weight_decay",
                 [] {
                     Opt(2, {.weight_decay = -1});
                 }},
                {"initial_accumulator_value",
                 [] {
                     Opt(2, {.initial_accumulator_value = -1});
                 }},
                {"eps", [] {
                     Opt(2, {.eps = 0});
                 }}};
    }
};

template <class S>
struct ScaltraCase {
    using Opt = scaltra::Scaltra<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.alpha0 = 0.2, .meta = {.lr = 1e-2}, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"alpha0",
                 [] {
                     Opt(2, {.alpha0 = 0});
                 }},
                {"beta",
                 [] {
                     Opt(2, {.beta = 1});
                 }},
                {"gamma0",
                 [] {
                     Opt(2, {.gamma0 = -1});
                 }},
                {"epsilon",
                 [] {
                     Opt(2, {.epsilon = -1e-4});
                 }},
                {"epsilon",
                 [] {
                     Opt(2, {.epsilon = 2});
                 }},  // ε·γ₀ ≥ 1
                {"gamma_decay",
                 [] {
                     Opt(2, {.gamma_decay = 1.5});
                 }},
                {"b_scale",
                 [] {
                     Opt(2, {.b_scale = -1});
                 }},
                {"tau_min",
                 [] {
                     Opt(2, {.tau_min = 0});
                 }},
                {"alpha0",
                 [] {
                     Opt(2, {.alpha0 = 1e7});
                 }},  // τ₀ below tau_min
                {"alpha0",
                 [] {
                     Opt(2, {.alpha0 = std::numeric_limits<S>::denorm_min()});
                 }},  // τ₀ = γ₀/α₀ overflows
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

template <class S, class Optimizer = scaltra::Lodo<S>>
struct LodoCase {
    using Opt = Optimizer;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.alpha0 = 0.05, .layers = 4, .meta = {.lr = 1e-2}, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"alpha0",
                 [] {
                     Opt(2, {.alpha0 = 0});
                 }},
                {"layers",
                 [] {
                     Opt(2, {.layers = -1});
                 }},
                {"block",
                 [] {
                     Opt(2, {.block = -1});
                 }},
                {"block",
                 [] {
                     Opt(2, {.block = 33});
                 }},
                {"beta",
                 [] {
                     Opt(2, {.beta = 1});
                 }},
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

template <class S>
struct ApoCase {
    using Opt = scaltra::Apo<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.base = {.lr = 0.05, .momentum = 0.9},
                       .interval = 3,
                       .lambda_wsd = 0.1,
                       .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"interval",
                 [] {
                     Opt(2, {.interval = 0});
                 }},
                {"lambda_fsd",
                 [] {
                     Opt(2, {.lambda_fsd = -1});
                 }},
                {"lambda_wsd",
                 [] {
                     Opt(2, {.lambda_wsd = S(NAN)});
                 }},
                {"lr",
                 [] {
                     Opt(2, {.base = {.lr = 0}});
                 }},  // η₀ = 0
                {"lr",
                 [] {
                     Opt(2, {.base = {.lr = scaltra::schedule::cosine(0.1, 100)}});
                 }},  // APO is the schedule
                {"momentum",
                 [] {
                     Opt(2, {.base = {.momentum = -1}});
                 }},
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

/// A layout of n elements with a weight matrix (2×((n−2)/2)) and a bias.
inline scaltra::Layout matrix_and_bias(Index n) {
    const Index cols = (n - 2) / 2;
    return scaltra::Layout().add("W", 2, cols).add("b", n - 2 * cols);
}

template <class S>
struct ApoPCase {
    using Opt = scaltra::ApoP<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(
            matrix_and_bias(n),
            {.lr = 0.05, .momentum = 0.5, .interval = 3, .lambda_wsd = 0.1, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(matrix_and_bias(6), {.lr = -1});
                 }},
                {"momentum",
                 [] {
                     Opt(matrix_and_bias(6), {.momentum = 1});
                 }},
                {"max_factor",
                 [] {
                     Opt(matrix_and_bias(6), {.max_factor = -1});
                 }},
                {"interval",
                 [] {
                     Opt(matrix_and_bias(6), {.interval = 0});
                 }},
                {"lambda_fsd",
                 [] {
                     Opt(matrix_and_bias(6), {.lambda_fsd = -1});
                 }},
                {"lambda_wsd",
                 [] {
                     Opt(matrix_and_bias(6), {.lambda_wsd = -1});
                 }},
                {"layout",
                 [] {
                     Opt(6);
                 }},  // no weight matrix
                {"lr", [] {
                     Opt(matrix_and_bias(6), {.meta = {.lr = -1}});
                 }}};
    }
};

// The DCO optimizers untrained (φ₀), on raw gradients: ordinary optimizers of the concept.
template <class S>
struct DcogCase {
    using Opt = scaltra::Dcog<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.5, .normalize_gradient = false, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = 0});
                 }},
                {"lr", [] {
                     Opt(2, {.meta = {.lr = -1}});
                 }}};
    }
};

template <class S>
struct DcomCase {
    using Opt = scaltra::Dcom<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.5, .momentum = 0.5, .normalize_gradient = false, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = S(NAN)});
                 }},
                {"momentum",
                 [] {
                     Opt(2, {.momentum = 1});
                 }},
                {"alpha", [] {
                     Opt(2, {.meta = {.alpha = 2}});
                 }}};
    }
};

template <class S>
struct DcogdCase {
    using Opt = scaltra::Dcogd<S>;
    static Opt make(Index n, NonFinitePolicy p = NonFinitePolicy::raise) {
        return Opt(n, {.lr = 0.5, .normalize_gradient = false, .on_non_finite = p});
    }
    static std::vector<std::pair<std::string, std::function<void()>>> bad() {
        return {{"lr",
                 [] {
                     Opt(2, {.lr = -1});
                 }},
                {"max_size",
                 [] {
                     Opt(2, {.max_size = 0});
                 }},
                {"max_size", [] {
                     Opt(5, {.max_size = 4});
                 }}};
    }
};

// The cases by optimizer family: each family's test file runs the cross-optimizer
// suites over its own list (cross_optimizer_suites.hpp).
using ClassicCases =
    std::tuple<SgdCase<float>, SgdCase<double>, AdamCase<float>, AdamCase<double>, AdamWCase<float>,
               AdamWCase<double>, RmsPropCase<float>, RmsPropCase<double>, AdaGradCase<float>,
               AdaGradCase<double>>;
using ScaltraCases = std::tuple<ScaltraCase<float>, ScaltraCase<double>>;
using LodoCases = std::tuple<LodoCase<float>, LodoCase<double>>;
/// LODO with its meta-state in bfloat16 (after DCO in AllCases: it came later).
using CompactLodoCases = std::tuple<LodoCase<float, scaltra::CompactLodo<float>>>;
using ApoCases = std::tuple<ApoCase<float>, ApoCase<double>, ApoPCase<float>, ApoPCase<double>>;
using DcoCases = std::tuple<DcogCase<float>, DcogCase<double>, DcomCase<float>, DcomCase<double>,
                            DcogdCase<float>, DcogdCase<double>>;

/// Every case, in the order the fuzz corpora's first byte indexes: a new family's
/// list goes at the end.
using AllCases = decltype(std::tuple_cat(ClassicCases{}, ScaltraCases{}, LodoCases{}, ApoCases{},
                                         DcoCases{}, CompactLodoCases{}));

}  // namespace testing
