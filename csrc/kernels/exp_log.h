// The two transcendental functions of the logistic cost, on the narrow ranges it needs:
// exp(x) for x <= 0, and log1p(e) for e in [0, 1]. Written branch-free for float on the host,
// so that a loop over a block of costs vectorises (libm's expf and log1pf are opaque calls,
// ~10 ns per element together); double and the GPU use the library functions.
//
// Accuracy of the float versions, measured against double-precision exp and log1p over every
// float of the range (tests/csrc/exp_log_host.cpp with stride 1): exp_nonpositive within
// 1.33 ulp (the worst case among subnormal results, near -103), log1p_unit within 1.26 ulp.
// NaN in gives NaN out.
#pragma once

#include <cmath>
#include <cstdint>

#include "device.h"

namespace aot_loss::kernels {

#if !defined(__CUDA_ARCH__)
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
  const int32_t ni = static_cast<int32_t>(n);  // in [-149, 0]
  const int32_t n1 = ni / 2, n2 = ni - n1;
  const float y = p * from_bits<float>(static_cast<uint32_t>(n1 + 127) << 23) *
                  from_bits<float>(static_cast<uint32_t>(n2 + 127) << 23);
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
#endif

AOT_HD inline float exp_nonpositive(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return exp_nonpositive_host(x);
#endif
}

AOT_HD inline float log1p_unit(float e) {
#if defined(__CUDA_ARCH__)
  return ::log1pf(e);
#else
  return log1p_unit_host(e);
#endif
}

AOT_HD inline double exp_nonpositive(double x) { return ::exp(x); }
AOT_HD inline double log1p_unit(double e) { return ::log1p(e); }

}  // namespace aot_loss::kernels
