// Every optimizer of the library, the online meta-learning loop of the learned
// ones, and the learning-rate schedules.
#pragma once

#include "optim/adagrad.hpp"
#include "optim/adam.hpp"
#include "optim/apo.hpp"
#include "optim/clip.hpp"
#include "optim/dco.hpp"
#include "optim/lodo.hpp"
#include "optim/online_meta.hpp"
#include "optim/rmsprop.hpp"
#include "optim/scaltra.hpp"
#include "optim/schedule.hpp"
#include "optim/sgd.hpp"
