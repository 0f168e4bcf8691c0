// Accuracy of csrc/common/exp_log.h's functions, for tests/test_exp_log_host.py: the float
// versions against double-precision libm, walking the float bit patterns of each function's
// range with a stride (every float when the stride is 1); the double versions against libm in
// long double (x86's 64-bit mantissa), at 2e7 bit patterns spread evenly over the range.
// Prints, per function, the largest error in units in the last place of the correctly
// rounded result, then the special values.
//   usage: exp_log_host STRIDE
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/exp_log.h"

namespace k = aot_loss::kernels;

namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

uint64_t bits_of(double f) {
  uint64_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// |got - exact| in ulps of the value of type T nearest to exact (the spacing at the smallest
// subnormal for results that round to zero); Wide holds the exact value.
template <typename T, typename Wide>
double ulp_error(T got, Wide exact) {
  const T nearest = static_cast<T>(exact);
  const T up = std::nextafter(nearest, static_cast<T>(INFINITY));
  const Wide ulp = static_cast<Wide>(up) - static_cast<Wide>(nearest);
  return static_cast<double>(std::fabs(static_cast<Wide>(got) - exact) / ulp);
}

// Largest error over the values with bit patterns in [first, last], every `stride`-th one.
template <typename T, typename Wide, typename Bits, typename F, typename G>
double worst(Bits first, Bits last, Bits stride, F approx, G exact, T* where) {
  double worst = 0.0;
  for (Bits b = first; b <= last && b >= first; b += stride) {  // b >= first: no wrap-around
    T x;
    std::memcpy(&x, &b, sizeof x);
    const double e = ulp_error<T, Wide>(approx(x), exact(static_cast<Wide>(x)));
    if (!(e <= worst)) {
      worst = e;
      *where = x;
    }
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t stride = argc > 1 ? static_cast<uint64_t>(std::atoll(argv[1])) : 1;
  float where = 0.0f;
  // exp on [-104, -0]: negative floats have bit patterns from 0x80000000 (-0) up.
  const double exp_ulps = worst<float, double, uint64_t>(
      bits_of(-0.0f), bits_of(-104.0f), stride, [](float x) { return k::exp_nonpositive_host(x); },
      [](double x) { return std::exp(x); }, &where);
  std::printf("exp %.6f %.9g\n", exp_ulps, where);
  const double log1p_ulps = worst<float, double, uint64_t>(
      bits_of(0.0f), bits_of(1.0f), stride, [](float e) { return k::log1p_unit_host(e); },
      [](double e) { return std::log1p(e); }, &where);
  std::printf("log1p %.6f %.9g\n", log1p_ulps, where);
  double where64 = 0.0;
  const uint64_t exp_first = bits_of(-0.0), exp_last = bits_of(-746.0);
  const double exp64_ulps = worst<double, long double, uint64_t>(
      exp_first, exp_last, (exp_last - exp_first) / 20000000 + 1, [](double x) { return k::exp_nonpositive_host(x); },
      [](long double x) { return std::exp(x); }, &where64);
  std::printf("exp64 %.6f %.17g\n", exp64_ulps, where64);
  const uint64_t log_last = bits_of(1.0);
  const double log1p64_ulps = worst<double, long double, uint64_t>(
      uint64_t(0), log_last, log_last / 20000000 + 1, [](double e) { return k::log1p_unit_host(e); },
      [](long double e) { return std::log1p(e); }, &where64);
  std::printf("log1p64 %.6f %.17g\n", log1p64_ulps, where64);
  // Special values: exp(0) = 1, exp(-inf) = 0, exp(-104) = 0 (below the smallest subnormal),
  // log1p(0) = 0, log1p(1) = log(2) rounded, NaN stays NaN.
  std::printf("exp(-0) %.9g\nexp(-inf) %.9g\nexp(-104) %.9g\nexp(nan) %.9g\n", k::exp_nonpositive_host(-0.0f),
              k::exp_nonpositive_host(-INFINITY), k::exp_nonpositive_host(-104.0f), k::exp_nonpositive_host(NAN));
  std::printf("log1p(0) %.9g\nlog1p(1) %.9g\nlog1p(nan) %.9g\n", k::log1p_unit_host(0.0f), k::log1p_unit_host(1.0f),
              k::log1p_unit_host(NAN));
  std::printf("exp64(-0) %.17g\nexp64(-inf) %.17g\nexp64(-746) %.17g\nexp64(nan) %.17g\n", k::exp_nonpositive_host(-0.0),
              k::exp_nonpositive_host(-static_cast<double>(INFINITY)), k::exp_nonpositive_host(-746.0),
              k::exp_nonpositive_host(static_cast<double>(NAN)));
  std::printf("log1p64(0) %.17g\nlog1p64(1) %.17g\nlog1p64(nan) %.17g\n", k::log1p_unit_host(0.0),
              k::log1p_unit_host(1.0), k::log1p_unit_host(static_cast<double>(NAN)));
  return 0;
}
