// What lets one kernel header serve both the C++ CPU kernels and the CUDA kernels: the
// host/device annotation and the few primitives whose spelling differs on a GPU.
// Torch-free, and plain C++ when no CUDA compiler is involved.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define AOT_HD __host__ __device__
#else
#define AOT_HD
#endif

namespace aot_loss::kernels {

// The bits of a float as an unsigned integer of the same size, and back (std::bit_cast
// is C++20, and memcpy is the portable host spelling; the device has intrinsics).
AOT_HD inline uint32_t to_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

AOT_HD inline uint64_t to_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

template <typename T, typename K>
AOT_HD inline T from_bits(K bits) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) {
    return __uint_as_float(static_cast<unsigned>(bits));
  } else {
    return __longlong_as_double(static_cast<long long>(bits));
  }
#else
  T x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

// Overloaded math that resolves to the float or double function on host and device alike
// (the std:: overloads are host-only, the C names float-only or double-only).
AOT_HD inline float k_fabs(float x) { return ::fabsf(x); }
AOT_HD inline double k_fabs(double x) { return ::fabs(x); }

template <typename T>
AOT_HD inline T k_min(T a, T b) {
  return b < a ? b : a;
}

template <typename T>
AOT_HD inline T k_max(T a, T b) {
  return a < b ? b : a;
}

// a / b and a % b of non-negative integers, in 32-bit arithmetic where both fit: 64-bit
// division is a long software routine on a GPU, and once per element it dominated the
// grid-stride kernels.
struct QuotRem {
  int64_t quot, rem;
};

AOT_HD inline QuotRem quot_rem(int64_t a, int64_t b) {
  if (((a | b) >> 32) == 0) {
    const uint32_t q = static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
    return {q, static_cast<uint32_t>(a) - q * static_cast<uint32_t>(b)};
  }
  return {a / b, a % b};
}

}  // namespace aot_loss::kernels
