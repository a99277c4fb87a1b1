// Compiled instances, for a program of many files: the learned optimizers it
// shares (SCALTRA and LODO for float and double, CompactLodo<float>, and APO-P's
// rule for float), the tape's matrix products (matmul, solve_spd,
// block_diag_mul for float and double) and random_orthogonal for an Rng, compiled
// once instead of in every file that uses one. Every file of the program
// defines SCALTRA_EXTERN_INSTANCES, so that it declares them only, and one file
// compiles them:
//     #define SCALTRA_DEFINE_INSTANCES
//     #include <scaltra/scaltra.hpp>
// That file and every file that uses the instances must agree on the macros that
// change the library (EIGEN_USE_BLAS changes the tape's products): a file with
// other ones compiles everything itself, without SCALTRA_EXTERN_INSTANCES.
// With neither macro (the default) scaltra stays header-only. scaltra's own tests,
// examples and benchmarks build this way (the CMake option SCALTRA_COMPILED_INSTANCES).
#pragma once

/// An explicit instantiation of `__VA_ARGS__` (a `class …` or a function of the
/// library), as the macros above ask: its definition, its declaration, or nothing.
#if defined(SCALTRA_DEFINE_INSTANCES)
#define SCALTRA_INSTANCE(...) template __VA_ARGS__;
#elif defined(SCALTRA_EXTERN_INSTANCES)
#define SCALTRA_INSTANCE(...) extern template __VA_ARGS__;
#else
#define SCALTRA_INSTANCE(...)
#endif
