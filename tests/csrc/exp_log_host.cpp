// Accuracy of csrc/kernels/exp_log.h's float functions against double-precision libm, for
// tests/test_exp_log_host.py. Walks the float bit patterns of each function's range with a
// stride (every float when the stride is 1) and prints, per function, the largest error in
// units in the last place of the correctly rounded result, then the special values.
//   usage: exp_log_host STRIDE
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/exp_log.h"

namespace k = aot_loss::kernels;

namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// |got - exact| in ulps of the float nearest to exact (the spacing at the smallest
// subnormal for results that round to zero).
double ulp_error(float got, double exact) {
  const float nearest = static_cast<float>(exact);
  const float up = std::nextafter(nearest, INFINITY);
  const double ulp = static_cast<double>(up) - static_cast<double>(nearest);
  return std::fabs(static_cast<double>(got) - exact) / ulp;
}

// Largest error over the floats with bit patterns in [first, last], every `stride`-th one.
template <typename F, typename G>
double worst(uint32_t first, uint32_t last, uint32_t stride, F approx, G exact, float* where) {
  double worst = 0.0;
  for (uint64_t b = first; b <= last; b += stride) {
    const float x = from_bits(static_cast<uint32_t>(b));
    const double e = ulp_error(approx(x), exact(static_cast<double>(x)));
    if (!(e <= worst)) {
      worst = e;
      *where = x;
    }
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  const uint32_t stride = argc > 1 ? static_cast<uint32_t>(std::atoi(argv[1])) : 1;
  float where = 0.0f;
  // exp on [-104, -0]: negative floats have bit patterns from 0x80000000 (-0) up.
  const double exp_ulps = worst(
      bits_of(-0.0f), bits_of(-104.0f), stride, [](float x) { return k::exp_nonpositive_host(x); },
      [](double x) { return std::exp(x); }, &where);
  std::printf("exp %.6f %.9g\n", exp_ulps, where);
  const double log1p_ulps = worst(
      bits_of(0.0f), bits_of(1.0f), stride, [](float e) { return k::log1p_unit_host(e); },
      [](double e) { return std::log1p(e); }, &where);
  std::printf("log1p %.6f %.9g\n", log1p_ulps, where);
  // Special values: exp(0) = 1, exp(-inf) = 0, exp(-104) = 0 (below the smallest subnormal),
  // log1p(0) = 0, log1p(1) = log(2) rounded, NaN stays NaN.
  std::printf("exp(-0) %.9g\nexp(-inf) %.9g\nexp(-104) %.9g\nexp(nan) %.9g\n", k::exp_nonpositive_host(-0.0f),
              k::exp_nonpositive_host(-INFINITY), k::exp_nonpositive_host(-104.0f), k::exp_nonpositive_host(NAN));
  std::printf("log1p(0) %.9g\nlog1p(1) %.9g\nlog1p(nan) %.9g\n", k::log1p_unit_host(0.0f), k::log1p_unit_host(1.0f),
              k::log1p_unit_host(NAN));
  return 0;
}
