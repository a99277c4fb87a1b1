// The minimisation driver and its callbacks.
#pragma once

#include "train/callbacks.hpp"
#include "train/hooks.hpp"
#include "train/minimize.hpp"
#include "train/progress.hpp"
