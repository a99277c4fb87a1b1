// Callback hooks of the training drivers, found by name and checked at compile time.
//
// A callback is any class with one or more of the hooks
//
//   on_begin(opt, progress, x)            before the first step
//   on_evaluate(opt, progress, x, grad)   after each objective call; may change grad
//   on_step(opt, progress, x)             after each step (x is the new point)
//   on_epoch_end(opt, progress, x)        at the end of each epoch
//   on_end(opt, progress, x)              once, at the end
//
// with `progress` a `const Progress<S>&`, x an `Eigen::Ref<const Vec<S>>` and grad
// an `Eigen::Ref<Vec<S>>`. A hook returning `true` stops the run. A callback that
// declares a hook the driver cannot call (a wrong parameter type, a non-const
// hook on a const callback) or declares none fails to compile instead of being
// silently ignored.
#pragma once

#include <algorithm>
#include <functional>
#include <type_traits>
#include <utility>

#include "../core/types.hpp"
#include "progress.hpp"

namespace scaltra::detail {

// A member named like a hook makes that name ambiguous in HookProbe<C>, whatever
// the member is (function, template, overload set), so `&HookProbe<C>::name` is
// ill-formed exactly when C declares it.
struct HookNames {
    int on_begin, on_evaluate, on_step, on_epoch_end, on_end;
};
template <class C>
struct HookProbe : C, HookNames {};
template <class C>
concept Derivable = std::is_class_v<C> && !std::is_final_v<C>;

#define SCALTRA_DEFINE_HOOK(hook)                                                         \
    struct hook##_hook {                                                                  \
        template <class C>                                                                \
        static constexpr bool declared = Derivable<std::remove_cvref_t<C>> && !requires { \
            &HookProbe<std::remove_cvref_t<C>>::hook;                                     \
        };                                                                                \
        template <class C, class... A>                                                    \
        static constexpr bool callable = requires(C & c, A&&... a) {                      \
            c.hook(std::forward<A>(a)...);                                                \
        };                                                                                \
        template <class C, class... A>                                                    \
        static decltype(auto) call(C& c, A&&... a) {                                      \
            return c.hook(std::forward<A>(a)...);                                         \
        }                                                                                 \
    };
SCALTRA_DEFINE_HOOK(on_begin)
SCALTRA_DEFINE_HOOK(on_evaluate)
SCALTRA_DEFINE_HOOK(on_step)
SCALTRA_DEFINE_HOOK(on_epoch_end)
SCALTRA_DEFINE_HOOK(on_end)
#undef SCALTRA_DEFINE_HOOK

/// Calls the hook when the callback has it; true when it asks to stop.
template <class Hook, class C, class... A>
bool invoke_hook(C& c, A&&... a) {
    if constexpr (Hook::template callable<C, A...>) {
        if constexpr (std::is_convertible_v<decltype(Hook::call(c, std::forward<A>(a)...)), bool>)
            return Hook::call(c, std::forward<A>(a)...);
        else
            Hook::call(c, std::forward<A>(a)...);
    } else {
        static_assert(!Hook::template declared<C>,
                      "a callback declares this hook but the driver cannot call it with "
                      "(opt, progress, x[, grad]): is the callback const, or a parameter type "
                      "wrong?");
    }
    return false;
}

template <class Hook, class C, class... A>
constexpr bool hook_usable = Hook::template callable<C, A...> || !Hook::template declared<C>;

template <class Hook, class C, class... A>
constexpr bool hook_present = Hook::template callable<C, A...> || Hook::template declared<C>;

/// C (as passed, so const-ness counts) is a callback for optimizer Opt on scalar S:
/// it has at least one hook and the driver can call every hook it declares.
template <class C, class Opt, class S>
constexpr bool valid_callback = [] {
    using P = const Progress<S>&;
    using X = const Eigen::Ref<const Vec<S>>&;
    using G = Eigen::Ref<Vec<S>>&;
    constexpr bool usable[] = {
        hook_usable<on_begin_hook, C, Opt&, P, X>, hook_usable<on_evaluate_hook, C, Opt&, P, X, G>,
        hook_usable<on_step_hook, C, Opt&, P, X>,  hook_usable<on_epoch_end_hook, C, Opt&, P, X>,
        hook_usable<on_end_hook, C, Opt&, P, X>,
    };
    constexpr bool present[] = {
        hook_present<on_begin_hook, C, Opt&, P, X>,
        hook_present<on_evaluate_hook, C, Opt&, P, X, G>,
        hook_present<on_step_hook, C, Opt&, P, X>,
        hook_present<on_epoch_end_hook, C, Opt&, P, X>,
        hook_present<on_end_hook, C, Opt&, P, X>,
    };
    return std::ranges::all_of(usable, std::identity{})
           && std::ranges::any_of(present, std::identity{});
}();

}  // namespace scaltra::detail
