# Build options for scaltra's *own* targets (tests, benchmarks, examples).
# Never applied to the scaltra INTERFACE target, so consumers are unaffected.
include_guard(GLOBAL)

set(SCALTRA_WARNING_FLAGS -Wall -Wextra -Wpedantic -Werror)
set(SCALTRA_SANITIZER_FLAGS
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
# GCC's manual warns that sanitizers raise the rate of false -Wmaybe-uninitialized
# warnings (seen with g++ 12 in libstdc++'s <regex>, pulled in by Catch2), so that
# one warning is disabled in sanitizer builds to keep -Werror usable.
set(SCALTRA_SANITIZER_WARNING_FLAGS $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)

# scaltra_configure_target(<target>)
#   Warnings-as-errors, optional ASan+UBSan (SCALTRA_SANITIZE), links scaltra::scaltra.
function(scaltra_configure_target target)
  target_compile_options(${target} PRIVATE ${SCALTRA_WARNING_FLAGS})
  if(SCALTRA_SANITIZE)
    target_compile_options(${target} PRIVATE ${SCALTRA_SANITIZER_FLAGS}
                                             ${SCALTRA_SANITIZER_WARNING_FLAGS})
    target_link_options(${target} PRIVATE ${SCALTRA_SANITIZER_FLAGS})
  endif()
  target_link_libraries(${target} PRIVATE scaltra::scaltra)
  if(SCALTRA_OPENMP)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
  endif()
endfunction()

# scaltra_configure_fast_target(<target>)
#   scaltra_configure_target() plus -march=native when SCALTRA_NATIVE_ARCH is ON
#   and OpenBLAS when SCALTRA_OPENBLAS is ON and found (benchmarks and examples).
function(scaltra_configure_fast_target target)
  scaltra_configure_target(${target})
  if(SCALTRA_OPENBLAS)
    target_link_libraries(${target} PRIVATE scaltra_openblas)
  endif()
  if(SCALTRA_NATIVE_ARCH)
    # GCC 12's AVX-512 intrinsics trip false -W(maybe-)uninitialized warnings
    # (GCC bug 105593, fixed in GCC 13) once Eigen vectorises with them.
    target_compile_options(${target} PRIVATE -march=native
                           "$<$<AND:$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>:-Wno-maybe-uninitialized;-Wno-uninitialized>")
  endif()
endfunction()
