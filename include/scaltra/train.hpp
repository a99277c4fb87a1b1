// The training drivers (minimize, fit), their callbacks and checkpoints.
#pragma once

#include "train/callbacks.hpp"
#include "train/checkpoint.hpp"
#include "train/fit.hpp"
#include "train/hooks.hpp"
#include "train/minimize.hpp"
#include "train/progress.hpp"
