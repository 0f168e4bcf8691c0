// Stable ascending argsort of floating-point keys: torch-free, raw pointers only.
//
// Orders exactly as torch.sort(stable=True) does: -0.0 ties with 0.0, NaN sorts last, and
// equal keys keep their input order, so gradients reach the same elements as on the torch
// path. Small inputs use insertion sort; larger ones an LSD radix sort on order-preserving
// unsigned keys (8-bit digits, stable by construction, passes skipped when every key shares
// the digit). The caller owns all memory: no allocation per element or per call.
#pragma once

#include <cstdint>
#include <type_traits>

#include "device.h"

namespace aot_loss::kernels {

template <typename T>
using key_t = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

// Unsigned integer that orders like the float: flip every bit of negatives, only the sign
// bit of non-negatives. -0.0 is mapped to +0.0 first; every NaN gets the largest key.
// Branch-free: on random signs a branch here mispredicts half the time.
template <typename T>
AOT_HD inline key_t<T> order_key(T x) {
  using K = key_t<T>;
  constexpr int kBits = 8 * sizeof(K);
  constexpr K kSign = K(1) << (kBits - 1);
  const K bits = to_bits(x == T(0) ? T(0) : x);
  const K flip = (K(0) - (bits >> (kBits - 1))) | kSign;  // negative: all ones; else the sign bit
  return x != x ? ~K(0) : bits ^ flip;
}

// Inverse of order_key (up to the sign of zero and the NaN payload).
template <typename T>
AOT_HD inline T key_value(key_t<T> key) {
  using K = key_t<T>;
  constexpr int kBits = 8 * sizeof(K);
  constexpr K kSign = K(1) << (kBits - 1);
  const K flip = ((key >> (kBits - 1)) - K(1)) | kSign;  // was non-negative: the sign bit; else all
  return from_bits<T>(key ^ flip);
}

constexpr int64_t kInsertionSortMax = 48;

// Scratch for one argsort of up to `capacity` elements: two key and two index buffers.
template <typename T>
struct SortScratch {
  key_t<T>* keys[2];
  uint32_t* index[2];
};

// Writes the sorted values to `sorted` and the permutation to `perm`
// (sorted[i] = x[perm[i]]). `scratch` buffers must hold n elements each.
template <typename T>
void stable_argsort(const T* x, int64_t n, T* sorted, uint32_t* perm, SortScratch<T> scratch) {
  using K = key_t<T>;
  K* keys = scratch.keys[0];
  uint32_t* index = scratch.index[0];
  if (n <= kInsertionSortMax) {
    for (int64_t i = 0; i < n; ++i) {
      const K key = order_key(x[i]);
      int64_t j = i;
      for (; j > 0 && keys[j - 1] > key; --j) {  // strict: equal keys keep input order
        keys[j] = keys[j - 1];
        index[j] = index[j - 1];
      }
      keys[j] = key;
      index[j] = static_cast<uint32_t>(i);
    }
  } else {
    constexpr int kDigits = sizeof(K);
    int64_t count[kDigits][256] = {};
    for (int64_t i = 0; i < n; ++i) {
      const K key = order_key(x[i]);
      keys[i] = key;
      index[i] = static_cast<uint32_t>(i);
      for (int d = 0; d < kDigits; ++d) ++count[d][(key >> (8 * d)) & 0xFF];
    }
    int src = 0;
    for (int d = 0; d < kDigits; ++d) {
      int64_t* c = count[d];
      if (c[(keys[0] >> (8 * d)) & 0xFF] == n) continue;  // every key shares this digit
      int64_t offset = 0;
      for (int b = 0; b < 256; ++b) {
        const int64_t size = c[b];
        c[b] = offset;
        offset += size;
      }
      const K* kin = scratch.keys[src];
      const uint32_t* iin = scratch.index[src];
      K* kout = scratch.keys[1 - src];
      uint32_t* iout = scratch.index[1 - src];
      for (int64_t i = 0; i < n; ++i) {
        const int64_t pos = c[(kin[i] >> (8 * d)) & 0xFF]++;
        kout[pos] = kin[i];
        iout[pos] = iin[i];
      }
      src = 1 - src;
    }
    keys = scratch.keys[src];
    index = scratch.index[src];
  }
  for (int64_t i = 0; i < n; ++i) {
    sorted[i] = key_value<T>(keys[i]);
    perm[i] = index[i];
  }
}

}  // namespace aot_loss::kernels
