# Driver for the package.* ctest tests; run with `cmake -D... -P run_consumer.cmake`.
#
# MODE=install           : wipe STAGE_DIR, cmake --install SCALTRA_BINARY_DIR into it.
# MODE=find_package      : build+run the consumer against the installed STAGE_DIR.
# MODE=add_subdirectory  : build+run the consumer with add_subdirectory(SCALTRA_SOURCE_DIR).
cmake_minimum_required(VERSION 3.25)

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package test: ${what} failed (${rc}): ${ARGN}")
  endif()
endfunction()

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE "${STAGE_DIR}")
  run_step("install" "${CMAKE_COMMAND}" --install "${SCALTRA_BINARY_DIR}" --prefix "${STAGE_DIR}")
  return()
endif()

if(MODE STREQUAL "find_package")
  set(mode_args "-DCMAKE_PREFIX_PATH=${STAGE_DIR}" "-DSCALTRA_EXPECTED_PREFIX=${STAGE_DIR}")
elseif(MODE STREQUAL "add_subdirectory")
  set(mode_args "-DSCALTRA_SOURCE_DIR=${SCALTRA_SOURCE_DIR}")
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}'")
endif()

set(config_args
  -G "${CONSUMER_GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER}"
  -DCMAKE_BUILD_TYPE=Release)
if(CONSUMER_MAKE_PROGRAM)
  list(APPEND config_args "-DCMAKE_MAKE_PROGRAM=${CONSUMER_MAKE_PROGRAM}")
endif()
if(CONSUMER_EIGEN3_DIR)
  list(APPEND config_args "-DEigen3_DIR=${CONSUMER_EIGEN3_DIR}")
endif()

# Always start from a clean build directory so reruns are meaningful.
file(REMOVE_RECURSE "${CONSUMER_BINARY_DIR}")

run_step("configure" "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${CONSUMER_BINARY_DIR}"
         ${config_args} ${mode_args})
run_step("build" "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY_DIR}" --config Release)
run_step("run" "${CONSUMER_BINARY_DIR}/bin/scaltra_consumer${CONSUMER_EXE_SUFFIX}")
