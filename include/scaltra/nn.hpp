// Models built on the autodiff tape.
#pragma once

#include "nn/mlp.hpp"
