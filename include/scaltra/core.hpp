// Core: concepts, errors, layout, RNG, state format.
#pragma once

#include "core/bfloat16.hpp"
#include "core/concepts.hpp"
#include "core/error.hpp"
#include "core/instances.hpp"
#include "core/layout.hpp"
#include "core/random_orthogonal.hpp"
#include "core/rng.hpp"
#include "core/state_io.hpp"
#include "core/threads.hpp"
#include "core/types.hpp"
#include "core/validate.hpp"
