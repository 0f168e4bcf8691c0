// The rank sort of sort.h, out of line so that it is compiled per x86-64 level (cpu_clones.h).
#include "cpu/cpu_clones.h"
#include "common/sort.h"

namespace aot_loss::kernels {
namespace {

// Two full-length passes over the keys per element, with no branch and no early exit: the
// compiler turns each into vector compares and adds.
template <typename T>
inline void rank_argsort_impl(const T* x, int64_t n, T* sorted, uint32_t* perm, key_t<T>* __restrict keys) {
  using K = key_t<T>;
  for (int64_t i = 0; i < n; ++i) keys[i] = order_key(x[i]);
  for (int64_t i = 0; i < n; ++i) {
    const K key = keys[i];
    K rank = 0;
    for (int64_t j = 0; j < n; ++j) rank += static_cast<K>((keys[j] < key) | ((keys[j] == key) & (j < i)));
    sorted[rank] = key_value<T>(key);
    perm[rank] = static_cast<uint32_t>(i);
  }
}

}  // namespace

AOT_CPU_CLONES void rank_argsort(const float* x, int64_t n, float* sorted, uint32_t* perm, uint32_t* keys) {
  rank_argsort_impl(x, n, sorted, perm, keys);
}

AOT_CPU_CLONES void rank_argsort(const double* x, int64_t n, double* sorted, uint32_t* perm, uint64_t* keys) {
  rank_argsort_impl(x, n, sorted, perm, keys);
}

}  // namespace aot_loss::kernels
