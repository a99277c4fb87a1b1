// Data: the IDX reader, the Fashion-MNIST loader, minibatches and splits, and
// the synthetic task generators.
#pragma once

#include "data/fashion_mnist.hpp"
#include "data/idx.hpp"
#include "data/labelled_set.hpp"
#include "data/minibatches.hpp"
#include "data/synthetic.hpp"
