// The reverse-mode autodiff core: the tape and its ops.
#pragma once

#include "autodiff/check.hpp"
#include "autodiff/dual.hpp"
#include "autodiff/hvp.hpp"
#include "autodiff/ops_elementwise.hpp"
#include "autodiff/ops_linalg.hpp"
#include "autodiff/ops_loss.hpp"
#include "autodiff/ops_qp.hpp"
#include "autodiff/ops_shape.hpp"
#include "autodiff/tape.hpp"
