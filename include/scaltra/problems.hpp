// Test problems with known optima, for tests, benchmarks and users' own checks.
#pragma once

#include "problems/logistic_regression.hpp"
#include "problems/quadratic.hpp"
#include "problems/rosenbrock.hpp"
