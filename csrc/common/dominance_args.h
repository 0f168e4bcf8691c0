// The arguments of one call of the dominance kernel, on any device: the checked, contiguous
// inputs and the outputs to write, as the bindings pass them to the CPU and CUDA kernels.
#pragma once

#include <cstdint>

#include "common/costs.h"

namespace aot_loss::kernels {

template <typename T>
struct DominanceArgs {
  const T* u;   // (rows, n), contiguous
  const T* v;   // (rows, m)
  const T* wu;  // (rows, n) non-negative masses with a positive row sum, or nullptr
  const T* wv;  // (rows, m) or nullptr
  int64_t rows, n, m;
  CostParams params;
  T* cost;    // (rows,) out: OT cost of each row
  T* grad_u;  // (rows, n) out: d cost_row / d u, or nullptr when no gradient is needed
  T* grad_v;  // (rows, m) out, nullptr together with grad_u
};

}  // namespace aot_loss::kernels
