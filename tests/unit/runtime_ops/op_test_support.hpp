// Shared pieces of the op tests: seeded random tensors (never zero), element access, and the
// finite-difference gradient check every op goes through.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/runtime/node.hpp"
#include "engine/runtime/tensor.hpp"

namespace engine::rt::testing {

// Uniform in [-scale, -0.05 scale] U [0.05 scale, scale]: random, never zero, never tiny.
Tensor random_tensor(const Dims& shape, DType dtype, uint64_t seed, double scale = 1.0);
// Integer tensor with values uniform in [lo, hi].
Tensor random_ints(const Dims& shape, uint64_t seed, int64_t lo, int64_t hi, DType dtype = ENG_I32);
std::vector<double> values(const Tensor& t);

// Checks node->backward against central finite differences of L = sum_k <outputs_k, R_k> (R random): every
// element of every input i with check[i] is perturbed by +-h in fp64. Inputs must be f64 (or index tensors).
// Tolerance per element: |fd - analytic| <= rtol * max(|fd|, |analytic|) + atol.
void expect_gradients_match(const std::function<std::unique_ptr<Node>()>& make,
                            const std::vector<Tensor>& inputs, const std::vector<bool>& check,
                            double rtol = 1e-6, double atol = 1e-9, double h = 1e-5);

// max |a - b| over elements (same numel).
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b);
// Elements equal within rtol * |ref| + atol.
void expect_close(const std::vector<double>& actual, const std::vector<double>& ref, double rtol, double atol,
                  const char* what);
// Bytewise equality of two tensors' contents.
bool bitwise_equal(const Tensor& a, const Tensor& b);

}  // namespace engine::rt::testing
