// scaltra: meta-learned optimizers on Eigen. Includes everything but dist/.
#pragma once

#include "autodiff.hpp"
#include "core.hpp"
#include "data.hpp"
#include "nn.hpp"
#include "optim.hpp"
#include "problems.hpp"
#include "train.hpp"
