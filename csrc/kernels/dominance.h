// Fused dominance cost: sort U and V, couple their quantiles, apply h, and (optionally)
// the gradients of each row's cost with respect to U and V, all in one call.
// Torch-free: raw pointers, and parallelism supplied by the caller (the binding passes
// at::parallel_for through the stable ABI). Semantics are those of aot_loss/_coupling.py:
//   equal sizes, no weights: cost = (1/n) sum_i h(u_(i) - v_(i));
//   otherwise: cost = sum over cells of the merged cumulative-mass grid of mass * h(d).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "costs.h"
#include "sort.h"

namespace aot_loss::kernels {

template <typename T>
struct DominanceArgs {
  const T* u;   // (rows, n), contiguous
  const T* v;   // (rows, m)
  const T* wu;  // (rows, n) non-negative masses with a positive row sum, or nullptr
  const T* wv;  // (rows, m) or nullptr
  int64_t rows, n, m;
  CostParams params;
  T* cost;    // (rows,) out: OT cost of each row
  T* grad_u;  // (rows, n) out: d cost_row / d u, or nullptr when no gradient is needed
  T* grad_v;  // (rows, m) out, nullptr together with grad_u
};

// Rows sorted by the caller: values ascending and the permutation that produced them.
template <typename T>
struct SortedRow {
  const T* values;
  const uint32_t* perm;
  int64_t size;
};

// Sum of h over sorted pairs [begin, end); slopes scaled by 1/n scattered to the inputs.
template <typename T>
double pairs_range(SortedRow<T> u, SortedRow<T> v, int64_t begin, int64_t end, const CostParams& p,
                   T* gu, T* gv) {
  double total = 0.0;
  const T inv_n = T(1) / static_cast<T>(u.size);
  for (int64_t i = begin; i < end; ++i) {
    T slope;
    total += cost_and_slope<T>(u.values[i] - v.values[i], p, &slope);
    if (gu != nullptr) {
      gu[u.perm[i]] = slope * inv_n;
      gv[v.perm[i]] = -slope * inv_n;
    }
  }
  return total;
}

// Walks the merged grid of the two sets of cumulative levels (U first on ties, zero-length
// cells kept so that NaN costs propagate as on the torch path). Levels are exact integers
// without weights (level_u(i) = (i + 1) m, scale 1 / (n m)) and normalised doubles with.
template <typename T, typename LevelU, typename LevelV>
double merged_row(SortedRow<T> u, SortedRow<T> v, LevelU level_u, LevelV level_v, double scale,
                  const CostParams& p, T* gu, T* gv) {
  using Level = decltype(level_u(int64_t(0)));
  if (gu != nullptr) {
    std::fill(gu, gu + u.size, T(0));
    std::fill(gv, gv + v.size, T(0));
  }
  double total = 0.0;
  Level prev = Level(0);
  int64_t i = 0, j = 0;
  while (i < u.size && j < v.size) {
    const Level a = level_u(i), b = level_v(j);
    const Level end = a < b ? a : b;
    const double mass = static_cast<double>(end - prev) * scale;
    T slope;
    const T h = cost_and_slope<T>(u.values[i] - v.values[j], p, &slope);
    total += mass * static_cast<double>(h);
    if (gu != nullptr) {
      const T g = static_cast<T>(mass * static_cast<double>(slope));
      gu[u.perm[i]] += g;
      gv[v.perm[j]] -= g;
    }
    prev = end;
    if (a <= b) ++i;
    if (b <= a) ++j;
  }
  return total;
}

// Normalised cumulative masses of a sorted row (summed in double, last level exactly 1).
template <typename T>
void cumulative_levels(const T* weights, SortedRow<T> row, double* levels) {
  double running = 0.0;
  for (int64_t i = 0; i < row.size; ++i) {
    running += static_cast<double>(weights[row.perm[i]]);
    levels[i] = running;
  }
  const double total = running;
  for (int64_t i = 0; i < row.size; ++i) levels[i] /= total;
  levels[row.size - 1] = 1.0;
}

template <typename T>
double coupled_row(SortedRow<T> u, SortedRow<T> v, const T* wu, const T* wv, const CostParams& p, T* gu,
                   T* gv, std::vector<double>& levels) {
  const int64_t n = u.size, m = v.size;
  if (wu == nullptr && wv == nullptr) {
    if (n == m) return pairs_range(u, v, 0, n, p, gu, gv) / static_cast<double>(n);
    const double scale = 1.0 / (static_cast<double>(n) * static_cast<double>(m));
    return merged_row(
        u, v, [m](int64_t i) { return (i + 1) * m; }, [n](int64_t j) { return (j + 1) * n; }, scale, p,
        gu, gv);
  }
  levels.resize(static_cast<size_t>(n + m));
  double* lu = levels.data();
  double* lv = lu + n;
  if (wu != nullptr) {
    cumulative_levels(wu, u, lu);
  } else {
    for (int64_t i = 0; i < n; ++i) lu[i] = static_cast<double>(i + 1) / static_cast<double>(n);
  }
  if (wv != nullptr) {
    cumulative_levels(wv, v, lv);
  } else {
    for (int64_t j = 0; j < m; ++j) lv[j] = static_cast<double>(j + 1) / static_cast<double>(m);
  }
  return merged_row(u, v, [lu](int64_t i) { return lu[i]; }, [lv](int64_t j) { return lv[j]; }, 1.0, p, gu,
                    gv);
}

// Elements of work below which a parallel chunk is not worth a thread hand-off: sorting
// 4096 elements takes ~30 us, far above the hand-off; a coupling pass is cheaper per element.
constexpr int64_t kSortGrain = 4096;
constexpr int64_t kGrain = 32768;

template <typename T, typename ParallelFor>
void dominance_forward(const DominanceArgs<T>& a, const ParallelFor& parallel_for) {
  using K = key_t<T>;
  const int64_t rows = a.rows, n = a.n, m = a.m;
  std::vector<T> sorted(static_cast<size_t>(rows * (n + m)));
  std::vector<uint32_t> perm(static_cast<size_t>(rows * (n + m)));
  T* su = sorted.data();
  T* sv = su + rows * n;
  uint32_t* pu = perm.data();
  uint32_t* pv = pu + rows * n;

  // Phase 1: 2 * rows independent sorts (U and V of each row run on different threads).
  const int64_t width = std::max(n, m);
  parallel_for(0, 2 * rows, std::max<int64_t>(1, kSortGrain / width), [&](int64_t begin, int64_t end) {
    std::vector<K> keys(static_cast<size_t>(2 * width));
    std::vector<uint32_t> index(static_cast<size_t>(2 * width));
    SortScratch<T> scratch{{keys.data(), keys.data() + width}, {index.data(), index.data() + width}};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task >> 1;
      if ((task & 1) == 0) {
        stable_argsort(a.u + r * n, n, su + r * n, pu + r * n, scratch);
      } else {
        stable_argsort(a.v + r * m, m, sv + r * m, pv + r * m, scratch);
      }
    }
  });

  const bool grad = a.grad_u != nullptr;
  auto row_of = [&](int64_t r) {
    return std::make_pair(SortedRow<T>{su + r * n, pu + r * n, n}, SortedRow<T>{sv + r * m, pv + r * m, m});
  };
  // Phase 2, one large unweighted equal-size row: chunks of pairs in parallel. The chunk
  // size is fixed, so the partial sums (and the result) do not depend on the thread count.
  if (rows == 1 && n == m && a.wu == nullptr && a.wv == nullptr && n >= 2 * kGrain) {
    const int64_t chunks = (n + kGrain - 1) / kGrain;
    std::vector<double> partial(static_cast<size_t>(chunks));
    const std::pair<SortedRow<T>, SortedRow<T>> uv = row_of(0);
    const SortedRow<T> u = uv.first, v = uv.second;
    parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        partial[c] = pairs_range(u, v, c * kGrain, std::min(n, (c + 1) * kGrain), a.params,
                                 grad ? a.grad_u : nullptr, grad ? a.grad_v : nullptr);
      }
    });
    double total = 0.0;
    for (double s : partial) total += s;
    a.cost[0] = static_cast<T>(total / static_cast<double>(n));
    return;
  }
  // Phase 2: rows in parallel.
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / (n + m)), [&](int64_t begin, int64_t end) {
    std::vector<double> levels;
    for (int64_t r = begin; r < end; ++r) {
      const std::pair<SortedRow<T>, SortedRow<T>> uv = row_of(r);
      const T* wu = a.wu != nullptr ? a.wu + r * n : nullptr;
      const T* wv = a.wv != nullptr ? a.wv + r * m : nullptr;
      T* gu = grad ? a.grad_u + r * n : nullptr;
      T* gv = grad ? a.grad_v + r * m : nullptr;
      a.cost[r] = static_cast<T>(coupled_row(uv.first, uv.second, wu, wv, a.params, gu, gv, levels));
    }
  });
}

}  // namespace aot_loss::kernels
