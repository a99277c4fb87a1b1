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

# The learned optimizers and tape products that own targets share, compiled once
# (core/instances.hpp): one static library for each set of flags below, built only
# when a target links it. Off for the fuzzers (SCALTRA_FUZZ), which need every line
# of the library instrumented.
if(SCALTRA_FUZZ)
  set(SCALTRA_COMPILED_INSTANCES OFF)
endif()
if(SCALTRA_COMPILED_INSTANCES)
  file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/scaltra_instances.cpp CONTENT
       "#define SCALTRA_DEFINE_INSTANCES\n#include <scaltra/scaltra.hpp>\n")
endif()

# _scaltra_options(<target>): warnings-as-errors, optional ASan+UBSan
# (SCALTRA_SANITIZE), OpenMP, and links scaltra::scaltra.
function(_scaltra_options target)
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

# _scaltra_fast_options(<target>): _scaltra_options() plus -march=native when
# SCALTRA_NATIVE_ARCH is ON and OpenBLAS when SCALTRA_OPENBLAS is ON and found.
function(_scaltra_fast_options target)
  _scaltra_options(${target})
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

# _scaltra_link_instances(<target> <kind>): with SCALTRA_COMPILED_INSTANCES, the
# target uses the instances compiled with its own flags (<kind>: "" or "_fast").
function(_scaltra_link_instances target kind)
  if(NOT SCALTRA_COMPILED_INSTANCES)
    return()
  endif()
  set(library scaltra_instances${kind})
  if(NOT TARGET ${library})
    add_library(${library} STATIC EXCLUDE_FROM_ALL ${PROJECT_BINARY_DIR}/scaltra_instances.cpp)
    cmake_language(CALL _scaltra${kind}_options ${library})
    target_compile_definitions(${library} PUBLIC SCALTRA_EXTERN_INSTANCES)
  endif()
  target_link_libraries(${target} PRIVATE ${library})
endfunction()

# scaltra_configure_target(<target>)
#   _scaltra_options() and the compiled instances (tests, the fuzzers' tools).
function(scaltra_configure_target target)
  _scaltra_options(${target})
  _scaltra_link_instances(${target} "")
endfunction()

# scaltra_configure_fast_target(<target>)
#   _scaltra_fast_options() and the compiled instances (benchmarks and examples).
function(scaltra_configure_fast_target target)
  _scaltra_fast_options(${target})
  _scaltra_link_instances(${target} "_fast")
endfunction()
