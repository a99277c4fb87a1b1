// The three DCO update rules (dco.hpp has the maths and the optimizer that runs
// them): each rule's step x ← x + Δ(φ), its reverse step for meta-gradients
// (the formulas at the top of dco.hpp), its per-task meta-gradient and the
// summary of what it learned; with the options and state they share.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <tuple>

#include "../core/layout.hpp"
#include "../core/state_io.hpp"
#include "optimizer_base.hpp"
#include "rmsprop.hpp"

namespace scaltra {

template <Real S, class MetaOptions = RmsPropOptions<S>>
struct DcogOptions {
    S lr = S(1);  ///< η₀, the rate it starts at (Λ₀ = 1/√η₀)
    bool normalize_gradient = true;  ///< G = ∇f/‖∇f‖ (the paper's); false for Theorem 1
    MetaOptions meta = {};  ///< the meta-optimizer's (RMSProp: lr 0.01, α 0.99, ε 1e-8, the paper's)
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        detail::require_positive("lr", lr);
        meta.validate();
    }
};

template <Real S, class MetaOptions = RmsPropOptions<S>>
struct DcomOptions {
    S lr = S(1);          ///< η₀, the rate it starts at (Λ₀ = 1/√η₀)
    S momentum = S(0.9);  ///< β: M starts at 1 − β (EMA momentum)
    bool normalize_gradient = true;
    MetaOptions meta = {};
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        detail::require_positive("lr", lr);
        detail::require_in("momentum", momentum, S(0), detail::Bound::closed, S(1),
                           detail::Bound::open);
        meta.validate();
    }
};

template <Real S, class MetaOptions = RmsPropOptions<S>>
struct DcogdOptions {
    S lr = S(1);             ///< B starts at η₀I (the paper's B₀ = I)
    Index max_size = 2048;   ///< the largest p accepted (B has p² elements)
    bool normalize_gradient = true;
    MetaOptions meta = {};
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        detail::require_positive("lr", lr);
        detail::require_positive("max_size", max_size);
        meta.validate();
    }
};

template <Real S>
struct DcoState {
    std::int64_t step = 0;  ///< steps made since the start (or restart())
    Vec<S> phi;             ///< the learned parameters (each optimizer's meta_layout())
    Vec<S> momentum;        ///< DCOM's S (empty for DCOG and DCOGD)

    static constexpr std::array field_names{"step", "phi", "momentum"};
    auto fields() { return std::tie(step, phi, momentum); }
    auto fields() const { return std::tie(step, phi, momentum); }

    void validate() const { detail::require_step_count(step); }
};

namespace detail {

/// 1/‖g‖ (0 for g = 0): the normalisation's scale.
template <Real S>
S inverse_norm(const Eigen::Ref<const Vec<S>>& g) {
    S norm = g.norm();
    if (!std::isfinite(norm))
        norm = g.stableNorm();  // a huge but finite g whose squares overflow
    return norm > S(0) ? S(1) / norm : S(0);
}

/// A diagonal rule's per-task meta-gradient: a vector of φ's size.
template <Real S>
struct DenseTaskGradient {
    Vec<S> h;
};

/// DCOG's and DCOM's per-weight rates r = 1/Λ² = η₀e^{−2φ} from φ's log-Λ block
/// (Λ = Λ₀e^φ cannot reach 0); false when they are not finite.
template <Real S, class Derived>
bool refresh_rates(Vec<S>& rate, S eta0, const Eigen::MatrixBase<Derived>& log_lambda) {
    rate = eta0 * (S(-2) * log_lambda.array()).exp();
    return all_finite(rate);
}

/// The summary of learned rates both diagonal rules report.
template <Real S, class F>
void report_rates(const Vec<S>& rate, F& f) {
    f("lr_mean", static_cast<double>(rate.mean()));
    f("lr_min", static_cast<double>(rate.minCoeff()));
    f("lr_max", static_cast<double>(rate.maxCoeff()));
}

/// DCOG: θ⁺ = θ − r⊙G, r = η₀e^{−2φ}.
template <Real S, class MetaOptions>
class DcogRule {
public:
    using Options = DcogOptions<S, MetaOptions>;
    using TaskGradient = DenseTaskGradient<S>;
    static constexpr std::string_view kName = "DCOG";
    static constexpr bool kMomentum = false;

    DcogRule(const Layout& layout, const Options& options)
        : eta0_(options.lr), rate_(Vec<S>::Constant(layout.size(), options.lr)) {
        meta_layout_.add("log_lambda", layout.size());
    }

    const Layout& meta_layout() const { return meta_layout_; }
    Vec<S> initial_phi() const { return Vec<S>::Zero(rate_.size()); }

    /// r from φ; false when it is not finite.
    bool refresh(const Vec<S>& phi) { return refresh_rates(rate_, eta0_, phi); }

    /// x ← x − r⊙G with G = c·g.
    void advance(const Vec<S>&, std::int64_t, S c, const Eigen::Ref<const Vec<S>>& g,
                 Eigen::Ref<Vec<S>>, Eigen::Ref<Vec<S>> x) const {
        x.array() -= (c * rate_.array()) * g.array();
    }

    void backward(const Vec<S>&, Index, const Eigen::Ref<const Vec<S>>& G,
                  const Eigen::Ref<const Vec<S>>&, const Eigen::Ref<const Vec<S>>&,
                  const Vec<S>& a, Vec<S>&, Vec<S>& a_g, TaskGradient& tg) const {
        tg.h.array() += S(2) * rate_.array() * G.array() * a.array();
        a_g = -rate_.cwiseProduct(a);
    }

    void begin(TaskGradient& tg, Index) const { tg.h.setZero(rate_.size()); }
    void add_to(const TaskGradient& tg, S weight, Eigen::Ref<Vec<S>> h) const {
        h += weight * tg.h;
    }

    /// The learned per-weight rates 1/Λ².
    const Vec<S>& rate() const { return rate_; }

    template <class F>
    void for_each_learned(const Vec<S>&, F&& f) const {
        report_rates(rate_, f);
    }

private:
    S eta0_;
    Layout meta_layout_;
    Vec<S> rate_;
};

/// DCOM: S⁺ = S + M⊙(G − S) (S⁺ = G on the first step), θ⁺ = θ − r⊙S⁺. φ = [log Λ/Λ₀; M].
template <Real S, class MetaOptions>
class DcomRule {
public:
    using Options = DcomOptions<S, MetaOptions>;
    using TaskGradient = DenseTaskGradient<S>;
    static constexpr std::string_view kName = "DCOM";
    static constexpr bool kMomentum = true;

    DcomRule(const Layout& layout, const Options& options)
        : n_(layout.size()),
          eta0_(options.lr),
          mix0_(S(1) - options.momentum),
          rate_(Vec<S>::Constant(layout.size(), options.lr)) {
        meta_layout_.add("log_lambda", n_).add("M", n_);
    }

    const Layout& meta_layout() const { return meta_layout_; }
    Vec<S> initial_phi() const {
        Vec<S> phi(2 * n_);
        phi << Vec<S>::Zero(n_), Vec<S>::Constant(n_, mix0_);
        return phi;
    }

    bool refresh(const Vec<S>& phi) { return refresh_rates(rate_, eta0_, phi.head(n_)); }

    void advance(const Vec<S>& phi, std::int64_t k, S c, const Eigen::Ref<const Vec<S>>& g,
                 Eigen::Ref<Vec<S>> s, Eigen::Ref<Vec<S>> x) const {
        const auto M = phi.tail(n_);
        for_each_chunk(n_, [&](Index i, Index len) {
            auto ss = s.segment(i, len).array();
            const auto gs = c * g.segment(i, len).array();
            if (k == 0)
                ss = gs;
            else
                ss += M.segment(i, len).array() * (gs - ss);
            x.segment(i, len).array() -= rate_.segment(i, len).array() * ss;
        });
    }

    void backward(const Vec<S>& phi, Index k, const Eigen::Ref<const Vec<S>>& G,
                  const Eigen::Ref<const Vec<S>>& s_prev, const Eigen::Ref<const Vec<S>>& s_next,
                  const Vec<S>& a, Vec<S>& a_s, Vec<S>& a_g, TaskGradient& tg) const {
        const auto M = phi.tail(n_).array();
        a_s -= rate_.cwiseProduct(a);
        tg.h.head(n_).array() += S(2) * rate_.array() * s_next.array() * a.array();
        if (k == 0) {
            a_g = a_s;
            a_s.setZero();
            return;
        }
        tg.h.tail(n_).array() += a_s.array() * (G.array() - s_prev.array());
        a_g = (M * a_s.array()).matrix();
        a_s.array() *= S(1) - M;
    }

    void begin(TaskGradient& tg, Index) const { tg.h.setZero(2 * n_); }
    void add_to(const TaskGradient& tg, S weight, Eigen::Ref<Vec<S>> h) const {
        h += weight * tg.h;
    }

    const Vec<S>& rate() const { return rate_; }

    template <class F>
    void for_each_learned(const Vec<S>& phi, F&& f) const {
        report_rates(rate_, f);
        f("m_mean", static_cast<double>(phi.tail(n_).mean()));
    }

private:
    Index n_;
    S eta0_, mix0_;
    Layout meta_layout_;
    Vec<S> rate_;
};

/// DCOGD's per-task meta-gradient as factors: ∂/∂B = −Σ_k a_k G_kᵀ = −A Gᵀ.
template <Real S>
struct OuterProductTaskGradient {
    Mat<S> a, G;  ///< p×T
};

/// DCOGD: θ⁺ = θ − B G, φ = vec(B) (column-major).
template <Real S, class MetaOptions>
class DcogdRule {
public:
    using Options = DcogdOptions<S, MetaOptions>;
    using TaskGradient = OuterProductTaskGradient<S>;
    static constexpr std::string_view kName = "DCOGD";
    static constexpr bool kMomentum = false;

    DcogdRule(const Layout& layout, const Options& options)
        : n_(layout.size()), eta0_(options.lr) {
        if (n_ > options.max_size)
            throw InvalidArgument(concat(
                "Invalid layout: DCOGD learns a full p×p matrix B, and p = ", n_,
                " is above max_size = ", options.max_size, " (B would have ", n_ * n_,
                " elements); use DCOG or DCOM, or raise max_size"));
        meta_layout_.add("B", n_, n_);
    }

    const Layout& meta_layout() const { return meta_layout_; }
    Vec<S> initial_phi() const {
        Vec<S> phi = Vec<S>::Zero(n_ * n_);
        Eigen::Map<Mat<S>>(phi.data(), n_, n_).diagonal().setConstant(eta0_);
        return phi;
    }

    bool refresh(const Vec<S>& phi) { return all_finite(phi); }

    void advance(const Vec<S>& phi, std::int64_t, S c, const Eigen::Ref<const Vec<S>>& g,
                 Eigen::Ref<Vec<S>>, Eigen::Ref<Vec<S>> x) const {
        x.noalias() -= c * (matrix(phi) * g);
    }

    void backward(const Vec<S>& phi, Index k, const Eigen::Ref<const Vec<S>>& G,
                  const Eigen::Ref<const Vec<S>>&, const Eigen::Ref<const Vec<S>>&,
                  const Vec<S>& a, Vec<S>&, Vec<S>& a_g, TaskGradient& tg) const {
        tg.a.col(k) = a;
        tg.G.col(k) = G;
        a_g.noalias() = -(matrix(phi).transpose() * a);
    }

    void begin(TaskGradient& tg, Index steps) const {
        tg.a.setZero(n_, steps);
        tg.G.setZero(n_, steps);
    }
    void add_to(const TaskGradient& tg, S weight, Eigen::Ref<Vec<S>> h) const {
        Eigen::Map<Mat<S>> H(h.data(), n_, n_);
        H.noalias() -= weight * (tg.a * tg.G.transpose());
    }

    /// B as a matrix view of φ.
    Eigen::Map<const Mat<S>> matrix(const Vec<S>& phi) const {
        return Eigen::Map<const Mat<S>>(phi.data(), n_, n_);
    }

    template <class F>
    void for_each_learned(const Vec<S>& phi, F&& f) const {
        const auto B = matrix(phi);
        const S diagonal = B.diagonal().squaredNorm();
        f("lr_mean", static_cast<double>(B.trace() / static_cast<S>(n_)));
        f("offdiagonal_norm", static_cast<double>(std::sqrt(
                                  std::max(S(0), B.squaredNorm() - diagonal))));
    }

private:
    Index n_;
    S eta0_;
    Layout meta_layout_;
};

}  // namespace detail

}  // namespace scaltra
