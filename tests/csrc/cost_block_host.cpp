// Prints the bits of cost_block's outputs (csrc/cpu/cost_block.cpp) for every built-in cost,
// float and double, over differences spanning the costs' whole range and the special values,
// for tests/test_cost_block_host.py, which builds this once per x86-64 level (baseline,
// x86-64-v3, x86-64-v4) with AOT_CPU_CLONES empty and requires the same bits from each.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/cost_block.h"

namespace k = aot_loss::kernels;

namespace {

template <typename T>
std::vector<T> differences() {
  std::vector<T> d = {T(0), -T(0), std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                      std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::denorm_min()};
  uint64_t state = 42;
  for (int i = 0; i < 3000; ++i) {  // magnitudes from 1e-6 to 1e4, both signs
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const double unit = static_cast<double>(state >> 11) / 9007199254740992.0;
    const double magnitude = std::pow(10.0, -6.0 + 10.0 * unit);
    d.push_back(static_cast<T>((state >> 10) & 1 ? magnitude : -magnitude));
  }
  return d;
}

template <typename T>
void print_bits(const std::vector<T>& values) {
  for (const T x : values) {
    uint64_t bits = 0;
    std::memcpy(&bits, &x, sizeof x);
    std::printf("%llx\n", static_cast<unsigned long long>(bits));
  }
}

template <typename T>
void run_all() {
  const std::vector<T> d = differences<T>();
  const int64_t n = static_cast<int64_t>(d.size());
  std::vector<T> h(d.size()), slope(d.size());
  for (const k::Cost cost : {k::Cost::kLogistic, k::Cost::kSquaredHinge, k::Cost::kLeastSquares, k::Cost::kHinge}) {
    for (const double ls : {0.0, 0.2}) {
      const k::CostParams p{cost, 0.7, ls};
      k::cost_block(p, d.data(), n, h.data(), slope.data());
      print_bits(h);
      print_bits(slope);
    }
  }
}

}  // namespace

int main() {
  run_all<float>();
  run_all<double>();
  return 0;
}
