// The two transcendental functions of the logistic cost, on the narrow ranges it needs:
// exp(x) for x <= 0, and log1p(e) for e in [0, 1]. Written branch-free on the host, so that a
// loop over a block of costs vectorises (libm's exp and log1p are opaque calls, ~10 ns per
// element together); the GPU uses CUDA's functions.
//
// Accuracy against libm in extended precision (tests/csrc/exp_log_host.cpp):
// - float, over every float of the range: exp_nonpositive within 1.33 ulp (the worst case
//   among subnormal results, near -103), log1p_unit within 1.26 ulp;
// - double, over 2e7 doubles spread evenly over the bit patterns of the range:
//   exp_nonpositive within 0.94 ulp, log1p_unit within 1.19 ulp (libm: 0.50 and 0.82).
// NaN in gives NaN out.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "common/device.h"

namespace aot_loss::kernels {

#if !defined(__CUDA_ARCH__)
// p * 2^n for n from 0 down to the exponent of the smallest subnormal, as the two factors
// 2^(n/2) and 2^(n - n/2): each is a normal number, where 2^n alone may not be.
template <typename T>
inline T times_pow2(T p, int32_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr int kBias = std::numeric_limits<T>::max_exponent - 1;  // 127, 1023
  constexpr int kShift = std::numeric_limits<T>::digits - 1;       // 23, 52 mantissa bits
  const int32_t n1 = n / 2, n2 = n - n1;
  return p * from_bits<T>(static_cast<Bits>(n1 + kBias) << kShift) *
         from_bits<T>(static_cast<Bits>(n2 + kBias) << kShift);
}

// exp(x), x <= 0 or NaN: Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, Cephes'
// degree-6 polynomial for exp(r), then the scale 2^n as two factors, since n reaches -149
// where one factor would not be a normal float. Below -103 it returns 0, where the exact
// value is under 1.3 times the smallest subnormal.
inline float exp_nonpositive_host(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float xc = x >= -103.0f ? x : -103.0f;  // NaN too, so that the int conversion is defined
  const float n = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float y = times_pow2(p, static_cast<int32_t>(n));  // n in [-149, 0]
  return x != x ? x : (x < -103.0f ? 0.0f : y);
}

// log1p(e), e in [0, 1]: log of u = 1 + e by Cephes' logf on [sqrt(1/2), sqrt(2)), plus the
// first-order correction (e - (u - 1)) / u for the rounding of u (Goldberg's log1p).
inline float log1p_unit_host(float e) {
  const float u = 1.0f + e;
  const bool halve = u > 1.41421356237f;
  const float t = (halve ? u * 0.5f : u) - 1.0f;  // u = 2^k (1 + t), k = halve
  const float k = halve ? 1.0f : 0.0f;
  const float z = t * t;
  float y = 7.0376836292e-2f;
  y = y * t - 1.1514610310e-1f;
  y = y * t + 1.1676998740e-1f;
  y = y * t - 1.2420140846e-1f;
  y = y * t + 1.4249322787e-1f;
  y = y * t - 1.6668057665e-1f;
  y = y * t + 2.0000714765e-1f;
  y = y * t - 2.4999993993e-1f;
  y = y * t + 3.3333331174e-1f;
  y = y * t * z - 2.12194440e-4f * k - 0.5f * z;
  return (t + y + 0.693359375f * k) + (e - (u - 1.0f)) / u;
}

// exp(x), x <= 0 or NaN, in double: the same reduction, with fdlibm's split of ln 2 (its high
// part's trailing zeros make n ln2_hi exact), then exp(r) by its Taylor series to degree 13
// (|r| <= ln2 / 2 leaves a remainder below 1e-17). Below -746 the result rounds to zero.
inline double exp_nonpositive_host(double x) {
  constexpr double kLog2e = 1.44269504088896338700e+00;
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  const double xc = x >= -746.0 ? x : -746.0;
  const double n = (xc * kLog2e + kRound) - kRound;
  const double r = (xc - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1 / 13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  const double y = times_pow2(p, static_cast<int32_t>(n));  // n in [-1076, 0]
  return x != x ? x : (x < -746.0 ? 0.0 : y);
}

// log1p(e), e in [0, 1], in double: fdlibm's log on [sqrt(1/2), sqrt(2)) (s = f / (2 + f) and
// a degree-14 polynomial in s), plus the same correction for the rounding of u = 1 + e.
inline double log1p_unit_host(double e) {
  constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kLg1 = 6.666666666666735130e-01, kLg2 = 3.999999999940941908e-01;
  constexpr double kLg3 = 2.857142874366239149e-01, kLg4 = 2.222219843214978396e-01;
  constexpr double kLg5 = 1.818357216161805012e-01, kLg6 = 1.531383769920937332e-01;
  constexpr double kLg7 = 1.479819860511658591e-01;
  const double u = 1.0 + e;
  const bool halve = u > 1.41421356237309504880;
  const double f = (halve ? u * 0.5 : u) - 1.0;  // u = 2^k (1 + f), k = halve
  const double k = halve ? 1.0 : 0.0;
  const double s = f / (2.0 + f);
  const double z = s * s, w = z * z;
  const double r = z * (kLg1 + w * (kLg3 + w * (kLg5 + w * kLg7))) + w * (kLg2 + w * (kLg4 + w * kLg6));
  const double half_f2 = 0.5 * f * f;
  const double log_u = k * kLn2Hi - ((half_f2 - (s * (half_f2 + r) + k * kLn2Lo)) - f);
  return log_u + (e - (u - 1.0)) / u;
}
#endif

// What the cost functors call: the polynomials above on the host, CUDA's functions on the GPU.
#if defined(__CUDA_ARCH__)
AOT_HD inline float exp_nonpositive(float x) { return ::expf(x); }
AOT_HD inline double exp_nonpositive(double x) { return ::exp(x); }
AOT_HD inline float log1p_unit(float e) { return ::log1pf(e); }
AOT_HD inline double log1p_unit(double e) { return ::log1p(e); }
#else
AOT_HD inline float exp_nonpositive(float x) { return exp_nonpositive_host(x); }
AOT_HD inline double exp_nonpositive(double x) { return exp_nonpositive_host(x); }
AOT_HD inline float log1p_unit(float e) { return log1p_unit_host(e); }
AOT_HD inline double log1p_unit(double e) { return log1p_unit_host(e); }
#endif

}  // namespace aot_loss::kernels
