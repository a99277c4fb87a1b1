// The training drivers (minimize, fit, meta_train), their callbacks and checkpoints.
#pragma once

#include "train/callbacks.hpp"
#include "train/checkpoint.hpp"
#include "train/fit.hpp"
#include "train/hooks.hpp"
#include "train/meta_train.hpp"
#include "train/minimize.hpp"
#include "train/progress.hpp"
#include "train/regression_task.hpp"
