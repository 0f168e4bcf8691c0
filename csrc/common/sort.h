// Stable ascending argsort of floating-point keys: torch-free, raw pointers only.
//
// Orders exactly as torch.sort(stable=True) does: -0.0 ties with 0.0, NaN sorts last, and
// equal keys keep their input order, so gradients reach the same elements as on the torch
// path. Small inputs are ranked by counting (sort.cpp); larger ones take an LSD radix sort on
// order-preserving unsigned keys, stable by construction, passes skipped when every key shares
// the digit. The caller owns all memory (SortBuffers): no allocation per element or per call.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/device.h"
#include "common/scratch.h"

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

// Rows of up to kRankSortMax values are sorted by ranking: rank_i = #{j : k_j < k_i} +
// #{j < i : k_j == k_i}, branch-free and vectorised (sort.cpp), 2.5-3x faster than insertion
// sort there; beyond it the n^2 comparisons lose to the radix sort.
constexpr int64_t kRankSortMax = 64;
// float32 rows from this size on sort with 11-bit digits (3 passes), which pay off once their
// 2048 counters are well used; shorter rows with 8-bit digits (4 passes).
constexpr int64_t kWideRadixMin = 4096;

// sorted[rank_i] = x_i (canonical: -0.0 as 0.0) and perm[rank_i] = i; `keys` holds n.
void rank_argsort(const float* x, int64_t n, float* sorted, uint32_t* perm, uint32_t* keys);
void rank_argsort(const double* x, int64_t n, double* sorted, uint32_t* perm, uint64_t* keys);

// Scratch of the sorts of rows of up to `capacity` values. float32 radix-sorts one array of
// packed (key << 32 | index) words; float64 keys fill 64 bits, so keys and indices move side
// by side.
template <typename T>
struct SortBuffers;

template <>
struct SortBuffers<float> {
  explicit SortBuffers(int64_t capacity) : words(2 * capacity) {}
  Scratch<uint64_t> words;
};

template <>
struct SortBuffers<double> {
  explicit SortBuffers(int64_t capacity) : keys(2 * capacity), index(2 * capacity) {}
  Scratch<uint64_t> keys;
  Scratch<uint32_t> index;
};

// Count of each digit value of the keys, for every digit, from one pass over the keys; the
// offsets of a pass are their exclusive prefix sum.
template <int kBits, int kDigits>
struct DigitCounts {
  static constexpr int kValues = 1 << kBits;
  int64_t count[kDigits][kValues] = {};
  // The starts of each digit value's run in the output of pass d, or false when every key
  // shares the digit (the pass would leave the order unchanged).
  bool offsets(int d, int64_t n, uint32_t first_digit) {
    int64_t* c = count[d];
    if (c[first_digit] == n) return false;
    int64_t offset = 0;
    for (int b = 0; b < kValues; ++b) {
      const int64_t size = c[b];
      c[b] = offset;
      offset += size;
    }
    return true;
  }
};

// float32: LSD radix over the key half of packed words, kBits per pass.
template <int kBits>
void packed_radix_argsort(const float* x, int64_t n, float* sorted, uint32_t* perm, uint64_t* a, uint64_t* b) {
  constexpr int kDigits = (32 + kBits - 1) / kBits;
  constexpr uint64_t kMask = (uint64_t(1) << kBits) - 1;
  DigitCounts<kBits, kDigits> counts;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = order_key(x[i]);
    a[i] = (static_cast<uint64_t>(key) << 32) | static_cast<uint64_t>(i);
    for (int d = 0; d < kDigits; ++d) ++counts.count[d][(key >> (kBits * d)) & kMask];
  }
  for (int d = 0; d < kDigits; ++d) {
    const int shift = 32 + kBits * d;
    if (!counts.offsets(d, n, static_cast<uint32_t>((a[0] >> shift) & kMask))) continue;
    int64_t* c = counts.count[d];
    for (int64_t i = 0; i < n; ++i) b[c[(a[i] >> shift) & kMask]++] = a[i];
    std::swap(a, b);
  }
  for (int64_t i = 0; i < n; ++i) {
    sorted[i] = key_value<float>(static_cast<uint32_t>(a[i] >> 32));
    perm[i] = static_cast<uint32_t>(a[i]);
  }
}

// float64: LSD radix with 8-bit digits, keys and indices in separate arrays.
inline void radix_argsort(const double* x, int64_t n, double* sorted, uint32_t* perm, SortBuffers<double>& buf) {
  uint64_t* keys[2] = {buf.keys.data(), buf.keys.data() + n};
  uint32_t* index[2] = {buf.index.data(), buf.index.data() + n};
  DigitCounts<8, 8> counts;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t key = order_key(x[i]);
    keys[0][i] = key;
    index[0][i] = static_cast<uint32_t>(i);
    for (int d = 0; d < 8; ++d) ++counts.count[d][(key >> (8 * d)) & 0xFF];
  }
  int src = 0;
  for (int d = 0; d < 8; ++d) {
    if (!counts.offsets(d, n, static_cast<uint32_t>((keys[src][0] >> (8 * d)) & 0xFF))) continue;
    int64_t* c = counts.count[d];
    const uint64_t* kin = keys[src];
    const uint32_t* iin = index[src];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = c[(kin[i] >> (8 * d)) & 0xFF]++;
      keys[1 - src][pos] = kin[i];
      index[1 - src][pos] = iin[i];
    }
    src = 1 - src;
  }
  for (int64_t i = 0; i < n; ++i) {
    sorted[i] = key_value<double>(keys[src][i]);
    perm[i] = index[src][i];
  }
}

// Writes the sorted values to `sorted` and the permutation to `perm`
// (sorted[i] = x[perm[i]]). `buf` must have been made for at least n values.
inline void stable_argsort(const float* x, int64_t n, float* sorted, uint32_t* perm, SortBuffers<float>& buf) {
  uint64_t* a = buf.words.data();
  if (n <= kRankSortMax) {
    rank_argsort(x, n, sorted, perm, reinterpret_cast<uint32_t*>(a));
  } else if (n < kWideRadixMin) {
    packed_radix_argsort<8>(x, n, sorted, perm, a, a + n);
  } else {
    packed_radix_argsort<11>(x, n, sorted, perm, a, a + n);
  }
}

inline void stable_argsort(const double* x, int64_t n, double* sorted, uint32_t* perm, SortBuffers<double>& buf) {
  if (n <= kRankSortMax) {
    rank_argsort(x, n, sorted, perm, buf.keys.data());
  } else {
    radix_argsort(x, n, sorted, perm, buf);
  }
}

}  // namespace aot_loss::kernels
