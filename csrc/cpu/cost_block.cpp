// Definitions of cost_block.h, compiled per x86-64 level (cpu_clones.h). The build passes
// -fno-trapping-math, which lets the compiler evaluate both sides of a select; without it the
// baseline and AVX2 loops stay scalar.
#include "cpu/cost_block.h"

#include "cpu/cpu_clones.h"

namespace aot_loss::kernels {
namespace {

template <typename T>
struct EachCost {
  const T* __restrict d;
  int64_t n;
  T* __restrict h;
  T* __restrict slope;
  template <typename C>
  int operator()(const C& cost) const {
    for (int64_t i = 0; i < n; ++i) h[i] = cost(d[i], slope + i);
    return 0;
  }
};

}  // namespace

AOT_CPU_CLONES void cost_block(const CostParams& p, const float* d, int64_t n, float* h, float* slope) {
  with_cost<float>(p, EachCost<float>{d, n, h, slope});
}

AOT_CPU_CLONES void cost_block(const CostParams& p, const double* d, int64_t n, double* h, double* slope) {
  with_cost<double>(p, EachCost<double>{d, n, h, slope});
}

}  // namespace aot_loss::kernels
