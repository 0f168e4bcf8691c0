// Fused dominance cost: sort U and V, couple their quantiles, apply h, and (optionally)
// the gradients of each row's cost with respect to U and V, all in one call.
// Torch-free: raw pointers, and parallelism supplied by the caller (the binding passes
// at::parallel_for through the stable ABI). Semantics are those of aot_loss/_coupling.py:
//   equal sizes, no weights: cost = (1/n) sum_i h(u_(i) - v_(i));
//   otherwise: cost = sum over the cells of the merged cumulative-mass grid of mass * h(d)
//   (cells.h, shared with the CUDA kernels).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "cells.h"
#include "cost_block.h"
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

constexpr int64_t kCostBlock = 256;  // elements per cost_block call: its buffers stay in L1

// Sum of a block of costs in double, in eight interleaved partial sums (one chain of dependent
// additions would take longer than the costs themselves); a fixed order, so results repeat.
template <typename T>
double block_sum(const T* h, int64_t len) {
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    for (int k = 0; k < 8; ++k) lanes[k] += static_cast<double>(h[i + k]);
  }
  for (; i < len; ++i) lanes[i % 8] += static_cast<double>(h[i]);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

// Sum of h over sorted pairs [begin, end); slopes scaled by 1/n scattered to the inputs.
template <typename T>
double pairs_range(SortedRow<T> u, SortedRow<T> v, int64_t begin, int64_t end, const CostParams& p,
                   T* gu, T* gv) {
  T d[kCostBlock], h[kCostBlock], slope[kCostBlock];
  double total = 0.0;
  const T inv_n = T(1) / static_cast<T>(u.size);
  for (int64_t b = begin; b < end; b += kCostBlock) {
    const int64_t len = std::min(kCostBlock, end - b);
    for (int64_t k = 0; k < len; ++k) d[k] = u.values[b + k] - v.values[b + k];
    cost_block(p, d, len, h, slope);
    total += block_sum(h, len);
    if (gu != nullptr) {
      for (int64_t k = 0; k < len; ++k) {
        gu[u.perm[b + k]] = slope[k] * inv_n;
        gv[v.perm[b + k]] = -slope[k] * inv_n;
      }
    }
  }
  return total;
}

// Sum of mass * h over the cells [0, count) of one side, in blocks; each cell's gradient
// (mass * h') to grads. `cell_of(k)` returns cell k and its difference u - v.
template <typename T, typename CellOf>
double cells_range(int64_t count, const CellOf& cell_of, const CostParams& p, double* grads) {
  T d[kCostBlock], h[kCostBlock], slope[kCostBlock];
  double mass[kCostBlock], weighted[kCostBlock];
  double total = 0.0;
  for (int64_t b = 0; b < count; b += kCostBlock) {
    const int64_t len = std::min(kCostBlock, count - b);
    for (int64_t k = 0; k < len; ++k) {
      const std::pair<Cell, T> cell = cell_of(b + k);
      mass[k] = cell.first.mass;
      d[k] = cell.second;
    }
    cost_block(p, d, len, h, slope);
    for (int64_t k = 0; k < len; ++k) {
      weighted[k] = mass[k] * static_cast<double>(h[k]);
      grads[b + k] = mass[k] * static_cast<double>(slope[k]);
    }
    total += block_sum(weighted, len);
  }
  return total;
}

// Every cell of the merged grid (cells.h), then every sample's gradient from the cells that
// couple it. `cells` is scratch for the n + m cell gradients.
template <typename T, typename Levels>
double merged_row(SortedRow<T> u, SortedRow<T> v, const Levels& levels, const CostParams& p, T* gu, T* gv,
                  std::vector<double>& cells) {
  cells.resize(static_cast<size_t>(u.size + v.size));
  double* u_cells = cells.data();
  double* v_cells = u_cells + u.size;
  const T* us = u.values;
  const T* vs = v.values;
  double total = cells_range<T>(
      u.size,
      [&](int64_t i) {
        const Cell cell = u_cell_at(i, levels);
        return std::make_pair(cell, us[i] - vs[cell.partner]);
      },
      p, u_cells);
  total += cells_range<T>(
      v.size,
      [&](int64_t j) {
        const Cell cell = v_cell_at(j, levels);
        return std::make_pair(cell, us[cell.partner] - vs[j]);
      },
      p, v_cells);
  if (gu != nullptr) {
    for (int64_t i = 0; i < u.size; ++i) gu[u.perm[i]] = static_cast<T>(u_grad(i, levels, u_cells, v_cells));
    for (int64_t j = 0; j < v.size; ++j) gv[v.perm[j]] = static_cast<T>(v_grad(j, levels, u_cells, v_cells));
  }
  return total;
}

// Normalised cumulative masses of a sorted row (summed in double, last level exactly 1),
// or i / n for a row without weights.
template <typename T>
void cumulative_levels(const T* weights, SortedRow<T> row, double* levels) {
  const int64_t n = row.size;
  if (weights == nullptr) {
    for (int64_t i = 0; i < n; ++i) levels[i] = static_cast<double>(i + 1) / static_cast<double>(n);
    return;
  }
  double running = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    running += static_cast<double>(weights[row.perm[i]]);
    levels[i] = running;
  }
  const double total = running;
  for (int64_t i = 0; i < n; ++i) levels[i] /= total;
  levels[n - 1] = 1.0;
}

// The counts of cumulative levels by one merge of the two ascending level arrays: serial code
// walks them in order, where a GPU thread searches (count_levels) for its own element.
inline void merge_counts(const double* lu, int64_t n, const double* lv, int64_t m, uint32_t* below,
                         uint32_t* upto) {
  int64_t j = 0;
  for (int64_t i = 0; i < n; ++i) {
    while (j < m && lv[j] < lu[i]) ++j;
    below[i] = static_cast<uint32_t>(j);
  }
  int64_t i = 0;
  for (j = 0; j < m; ++j) {
    while (i < n && lu[i] <= lv[j]) ++i;
    upto[j] = static_cast<uint32_t>(i);
  }
}

// Scratch of one row: levels of weighted rows, counts, cell gradients.
struct RowScratch {
  std::vector<double> levels, cells;
  std::vector<uint32_t> counts;
};

template <typename T>
double coupled_row(SortedRow<T> u, SortedRow<T> v, const T* wu, const T* wv, const CostParams& p, T* gu,
                   T* gv, RowScratch& scratch) {
  const int64_t n = u.size, m = v.size;
  if (wu == nullptr && wv == nullptr && n == m) {
    return pairs_range(u, v, 0, n, p, gu, gv) / static_cast<double>(n);
  }
  scratch.counts.resize(static_cast<size_t>(n + m));
  uint32_t* below = scratch.counts.data();
  uint32_t* upto = below + n;
  if (wu == nullptr && wv == nullptr) {
    const UniformLevels levels{n, m};
    for (int64_t i = 0; i < n; ++i) below[i] = static_cast<uint32_t>(levels.v_below_u(i));
    for (int64_t j = 0; j < m; ++j) upto[j] = static_cast<uint32_t>(levels.u_upto_v(j));
    return merged_row(u, v, Counted<UniformLevels>(levels, below, upto), p, gu, gv, scratch.cells);
  }
  scratch.levels.resize(static_cast<size_t>(n + m));
  double* lu = scratch.levels.data();
  double* lv = lu + n;
  cumulative_levels(wu, u, lu);
  cumulative_levels(wv, v, lv);
  merge_counts(lu, n, lv, m, below, upto);
  return merged_row(u, v, Counted<CumulativeLevels>({lu, lv, n, m}, below, upto), p, gu, gv, scratch.cells);
}

// Elements of work per parallel chunk: sorting or coupling 4096 elements takes 10-30 us, well
// above a thread hand-off, and a larger grain leaves many short rows on one thread (32768
// elements put all of rows (1024, 16) in one chunk). One long row is cut into chunks of kGrain pairs, a fixed
// size, so that its partial sums (and the result) do not depend on the thread count.
constexpr int64_t kSortGrain = 4096;
constexpr int64_t kRowGrain = 4096;
constexpr int64_t kGrain = 32768;

template <typename T, typename ParallelFor>
void dominance_forward(const DominanceArgs<T>& a, const ParallelFor& parallel_for) {
  const int64_t rows = a.rows, n = a.n, m = a.m;
  Uninitialized<T> sorted(rows * (n + m));
  Uninitialized<uint32_t> perm(rows * (n + m));
  T* su = sorted.data();
  T* sv = su + rows * n;
  uint32_t* pu = perm.data();
  uint32_t* pv = pu + rows * n;

  // Phase 1: 2 * rows independent sorts (U and V of each row run on different threads).
  const int64_t width = std::max(n, m);
  parallel_for(0, 2 * rows, std::max<int64_t>(1, kSortGrain / width), [&](int64_t begin, int64_t end) {
    SortBuffers<T> scratch(width);
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
  parallel_for(0, rows, std::max<int64_t>(1, kRowGrain / (n + m)), [&](int64_t begin, int64_t end) {
    RowScratch scratch;
    for (int64_t r = begin; r < end; ++r) {
      const std::pair<SortedRow<T>, SortedRow<T>> uv = row_of(r);
      const T* wu = a.wu != nullptr ? a.wu + r * n : nullptr;
      const T* wv = a.wv != nullptr ? a.wv + r * m : nullptr;
      T* gu = grad ? a.grad_u + r * n : nullptr;
      T* gv = grad ? a.grad_v + r * m : nullptr;
      a.cost[r] = static_cast<T>(coupled_row(uv.first, uv.second, wu, wv, a.params, gu, gv, scratch));
    }
  });
}

}  // namespace aot_loss::kernels
