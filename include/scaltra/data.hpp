// Data: the IDX reader and the Fashion-MNIST loader.
#pragma once

#include "data/fashion_mnist.hpp"
#include "data/idx.hpp"
