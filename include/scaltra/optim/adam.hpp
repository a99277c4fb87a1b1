// Adam (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization") and
// AdamW (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization"),
// with the AMSGrad variant (Reddi et al., 2018), as torch.optim documents them:
//
//   g ← g + λx                        (Adam's L2 weight decay)  | x ← x(1 − ηλ)  (AdamW)
//   m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²,   v_max ← max(v_max, v)  (amsgrad)
//   x ← x − (η / (1−β₁ᵗ)) · m / (√v̂ / √(1−β₂ᵗ) + ε),   v̂ = v_max if amsgrad else v
//
// The moments are stored as S, or compactly as bfloat16 (Adam<float, bfloat16>:
// half the bytes, core/bfloat16.hpp): a step then widens them to float, takes
// the same expressions, and narrows the new moments, and an x stored as
// bfloat16 (LODO's compact θ), by stochastic rounding.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <tuple>

#include "../core/bfloat16.hpp"
#include "optimizer_base.hpp"
#include "schedule.hpp"

namespace scaltra {

template <Real S, bool Decoupled>
struct AdamFamilyOptions {
    LearningRate<S> lr = 1e-3;
    S beta1 = S(0.9);
    S beta2 = S(0.999);
    S eps = S(1e-8);
    S weight_decay = Decoupled ? S(1e-2) : S(0);  ///< L2 (Adam) or decoupled (AdamW)
    bool amsgrad = false;
    NonFinitePolicy on_non_finite = NonFinitePolicy::raise;

    void validate() const {
        using detail::Bound;
        lr.validate("lr");
        detail::require_in("beta1", beta1, S(0), Bound::closed, S(1), Bound::open);
        detail::require_in("beta2", beta2, S(0), Bound::closed, S(1), Bound::open);
        detail::require_positive("eps", eps);  // 0 would make a zero gradient 0/0
        detail::require_nonnegative("weight_decay", weight_decay);
    }
};

template <Real S>
using AdamOptions = AdamFamilyOptions<S, false>;
template <Real S>
using AdamWOptions = AdamFamilyOptions<S, true>;

/// Adam's state; the moments stored as T (S, or bfloat16).
template <Real S, StorageOf<S> T = S>
struct AdamState {
    std::int64_t step = 0;
    Vec<T> m, v;
    Vec<T> v_max;  ///< empty unless amsgrad

    static constexpr std::array field_names{"step", "m", "v", "v_max"};
    auto fields() { return std::tie(step, m, v, v_max); }
    auto fields() const { return std::tie(step, m, v, v_max); }

    void validate() const {
        detail::require_step_count(step);
        detail::require_state((v.array() >= T(0)).all(), "v", "must be non-negative");
        detail::require_state((v_max.array() >= T(0)).all(), "v_max", "must be non-negative");
    }
};

namespace detail {

template <Real S, bool Decoupled, StorageOf<S> T = S>
class AdamFamily : public OptimizerBase<AdamFamily<S, Decoupled, T>, S, AdamState<S, T>,
                                        AdamFamilyOptions<S, Decoupled>> {
    using Base = OptimizerBase<AdamFamily<S, Decoupled, T>, S, AdamState<S, T>,
                               AdamFamilyOptions<S, Decoupled>>;
    friend Base;
    static constexpr bool kCompact = !std::same_as<T, S>;

public:
    using typename Base::Options;
    using typename Base::State;
    using Stored = T;  ///< how the moments are stored (a learned rule stores φ so too)
    static constexpr std::string_view kName = kCompact
                                                  ? (Decoupled ? "AdamW/bfloat16" : "Adam/bfloat16")
                                                  : (Decoupled ? "AdamW" : "Adam");

    using Base::Base;

    /// The constants of one step, from begin_step().
    struct StepConstants {
        S b1, b2, eps, wd, step_size, bc2_sqrt, decay;
    };

    /// One step applied piece by piece, for an optimizer that fuses this step with
    /// the pass that makes its gradient (SCALTRA's meta-step): begin_step() counts
    /// the step and returns its constants, then apply_piece(k, i, xs, gs) updates
    /// the elements [i, i + len) of x (the array xs) and of the state given their
    /// gradient gs (xs of S, or of bfloat16 for compact moments). Nothing is
    /// checked: the caller has checked sizes and finiteness. apply() is exactly
    /// these two over the whole vector.
    StepConstants begin_step() {
        const S lr = this->options().lr(this->state_.step);
        return begin_step(this->state_, this->options(), lr);
    }
    template <class XS, class GS>
    void apply_piece(const StepConstants& k, Index i, XS&& xs, const GS& gs) {
        apply_piece(this->state_, this->options(), k, i, xs, gs);
    }

    static State initial_state(const Layout& layout, const Options& options) {
        const Index n = layout.size();
        return {0, Vec<T>::Zero(n), Vec<T>::Zero(n), Vec<T>::Zero(options.amsgrad ? n : 0)};
    }

    /// One step of `st` at learning rate `lr` in place of the options' (APO's η);
    /// false when it took x out of the finite range (detail::FiniteProbe).
    static bool apply_at(State& st, const Options& o, S lr, Eigen::Ref<Vec<S>> x,
                         const Eigen::Ref<const Vec<S>>& g) {
        const StepConstants k = begin_step(st, o, lr);
        FiniteProbe<S> probe;
        for_each_chunk(x.size(), [&](Index i, Index len) {
            apply_piece(st, o, k, i, x.segment(i, len).array(), g.segment(i, len).array());
            probe.add(x.segment(i, len).array());
        });
        return probe.finite();
    }

    /// The direction d of the next step, leaving `st` as it is: that step at
    /// learning rate η is x ← x − ηd, d = m̂/(√v̂ + ε) (+ λx for AdamW).
    static void direction(const State& st, const Options& o, const Eigen::Ref<const Vec<S>>& x,
                          const Eigen::Ref<const Vec<S>>& g, Eigen::Ref<Vec<S>> d) {
        const StepConstants k = constants(o, st.step + 1, S(1));  // step_size = 1/(1 − β₁ᵗ)
        for_each_chunk(x.size(), [&](Index i, Index len) {
            const auto xs = x.segment(i, len).array();
            auto ds = d.segment(i, len).array();
            auto use = [&](const auto& m, const auto& denominator) {
                if (Decoupled && k.wd != S(0))
                    ds = k.step_size * m / denominator + k.wd * xs;
                else
                    ds = k.step_size * m / denominator;
            };
            if constexpr (kCompact) {
                const Widened w = widened(st, o, i, len);
                moments<false>(w, o, k, 0, xs, g.segment(i, len).array(), use);
            } else {
                moments<false>(st, o, k, i, xs, g.segment(i, len).array(), use);
            }
        });
    }

private:
    static StepConstants constants(const Options& o, std::int64_t t, S lr) {
        return {o.beta1,
                o.beta2,
                o.eps,
                o.weight_decay,
                lr / (S(1) - std::pow(o.beta1, S(t))),
                std::sqrt(S(1) - std::pow(o.beta2, S(t))),
                S(1) - lr * o.weight_decay};
    }

    static StepConstants begin_step(State& st, const Options& o, S lr) {
        ++st.step;
        return constants(o, st.step, lr);
    }

    template <class XS, class GS>
    static void apply_piece(State& st, const Options& o, const StepConstants& k, Index i, XS&& xs,
                            const GS& gs) {
        auto step = [&](auto& moments_of, Index at, auto&& x, const auto& g) {
            moments<true>(moments_of, o, k, at, x, g, [&](const auto& m, const auto& denominator) {
                if (Decoupled && k.wd != S(0))
                    x *= k.decay;
                x -= k.step_size * m / denominator;
            });
        };
        if constexpr (kCompact) {
            // kChunk at a time: widen x and the moments, step them as S, narrow them back.
            using X = typename std::remove_cvref_t<XS>::Scalar;
            static_assert(std::same_as<X, S> || std::same_as<X, T>);
            for (Index at = 0; at < gs.size(); at += kChunk) {
                const Index len = std::min(kChunk, gs.size() - at), first = i + at;
                Widened w = widened(st, o, first, len);
                Eigen::Array<S, Eigen::Dynamic, 1, 0, kChunk, 1> x(len);
                detail::widen_into(xs.data() + at, x.data(), len);
                step(w, 0, x, gs.segment(at, len));
                detail::narrow_into(x.data(), xs.data() + at, len, rounding_salt(st.step, 0),
                                    first);
                detail::narrow_into(w.m.data(), st.m.data() + first, len, rounding_salt(st.step, 1),
                                    first);
                detail::narrow_into(w.v.data(), st.v.data() + first, len, rounding_salt(st.step, 2),
                                    first);
                if (o.amsgrad)
                    detail::narrow_into(w.v_max.data(), st.v_max.data() + first, len,
                                        rounding_salt(st.step, 3), first);
            }
        } else {
            step(st, i, xs, gs);
        }
    }

    /// Compact moments of elements [i, i + len) (len ≤ kChunk) widened to S, for
    /// moments() to read and write as a state's; no allocation.
    struct Widened {
        Eigen::Matrix<S, Eigen::Dynamic, 1, 0, kChunk, 1> m, v, v_max;
    };
    static Widened widened(const State& st, const Options& o, Index i, Index len) {
        Widened w;
        w.m.resize(len);
        w.v.resize(len);
        w.v_max.resize(o.amsgrad ? len : 0);
        detail::widen_into(st.m.data() + i, w.m.data(), len);
        detail::widen_into(st.v.data() + i, w.v.data(), len);
        if (o.amsgrad)
            detail::widen_into(st.v_max.data() + i, w.v_max.data(), len);
        return w;
    }

    /// The moments of elements [i, i + len) after this step, m′ and v′ (and
    /// max(v_max, v′) for amsgrad), handed to use(m′, √v̂′/√(1 − β₂ᵗ) + ε); with
    /// Commit they are stored in the state first. `st` is the state, or its
    /// Widened piece.
    template <bool Commit, class St, class XS, class GS, class Use>
    static void moments(St& st, const Options& o, const StepConstants& k, Index i, const XS& xs,
                        const GS& gs, Use&& use) {
        const Index len = gs.size();
        auto ms = st.m.segment(i, len).array();
        auto vs = st.v.segment(i, len).array();
        auto with = [&](const auto& gd) {
            const auto m_next = k.b1 * ms + (S(1) - k.b1) * gd;
            const auto v_next = saturated(k.b2 * vs + (S(1) - k.b2) * gd.square());
            auto denominator = [&](const auto& v) {
                return v.sqrt() / k.bc2_sqrt + k.eps;
            };
            if constexpr (Commit) {
                ms = m_next;
                vs = v_next;
                if (o.amsgrad) {
                    auto vmax = st.v_max.segment(i, len).array();
                    vmax = vmax.max(vs);
                    use(ms, denominator(vmax));
                } else {
                    use(ms, denominator(vs));
                }
            } else if (o.amsgrad) {
                use(m_next, denominator(st.v_max.segment(i, len).array().max(v_next)));
            } else {
                use(m_next, denominator(v_next));
            }
        };
        if (!Decoupled && k.wd != S(0))
            with(gs + k.wd * xs);
        else
            with(gs);
    }

    bool apply(Eigen::Ref<Vec<S>> x, const Eigen::Ref<const Vec<S>>& g) {
        return apply_at(this->state_, this->options(), this->options().lr(this->state_.step), x, g);
    }
};

}  // namespace detail

/// Adam with torch.optim.Adam's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8);
/// Adam<float, bfloat16> keeps its moments in bfloat16.
template <Real S, StorageOf<S> T = S>
using Adam = detail::AdamFamily<S, false, T>;

/// AdamW: Adam with decoupled weight decay (default 1e-2), as torch.optim.AdamW.
template <Real S, StorageOf<S> T = S>
using AdamW = detail::AdamFamily<S, true, T>;

}  // namespace scaltra
