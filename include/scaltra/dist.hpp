// dist/: data-parallel training over MPI. Not part of scaltra.hpp: include it in
// programs built with MPI (CMake: find_package(MPI), link MPI::MPI_CXX).
#pragma once

#include "dist/checkpoint.hpp"
#include "dist/data_parallel.hpp"
#include "dist/state_agreement.hpp"
#include "dist/task_shards.hpp"
