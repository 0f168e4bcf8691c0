// The cost and its slope over a block of differences, on the CPU: one dispatch on the cost
// per block, then a loop that the compiler vectorises (exp_log.h keeps it free of calls).
#pragma once

#include <cstdint>

#include "common/costs.h"

namespace aot_loss::kernels {

// h[i] = h(d[i]) and slope[i] = h'(d[i]) for i < n. The arrays must not overlap.
void cost_block(const CostParams& p, const float* d, int64_t n, float* h, float* slope);
void cost_block(const CostParams& p, const double* d, int64_t n, double* h, double* slope);

}  // namespace aot_loss::kernels
