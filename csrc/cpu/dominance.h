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
#include <stdexcept>
#include <utility>
#include <vector>

#include "common/cells.h"
#include "cpu/chunks.h"
#include "cpu/cost_block.h"
#include "common/costs.h"
#include "common/dominance_args.h"
#include "common/scratch.h"
#include "common/sort.h"

namespace aot_loss::kernels {

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

// Sum of mass * h over the cells [begin, end) of one side, in blocks; each cell's gradient
// (mass * h') to grads. `cell_of(k)` returns cell k and its difference u - v.
template <typename T, typename CellOf>
double cells_range(int64_t begin, int64_t end, const CellOf& cell_of, const CostParams& p, double* grads) {
  T d[kCostBlock], h[kCostBlock], slope[kCostBlock];
  double mass[kCostBlock], weighted[kCostBlock];
  double total = 0.0;
  for (int64_t b = begin; b < end; b += kCostBlock) {
    const int64_t len = std::min(kCostBlock, end - b);
    for (int64_t k = 0; k < len; ++k) {
      const std::pair<Cell, T> cell = cell_of(b + k);
      mass[k] = cell.first.mass;
      d[k] = mass[k] > 0.0 ? cell.second : T(0);  // see cell_cost
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

// Scratch of one row: levels of weighted rows, counts, cell gradients, partial sums.
struct RowScratch {
  Scratch<double> levels, cells;
  Scratch<uint32_t> counts;
  std::vector<double> partial;  // one per chunk
};

// Every cell of the merged grid (cells.h), then every sample's gradient from the cells that
// couple it.
template <typename T, typename Levels, typename ParallelFor>
double merged_row(SortedRow<T> u, SortedRow<T> v, const Levels& levels, const CostParams& p, T* gu, T* gv,
                  RowScratch& scratch, const ParallelFor& parallel_for) {
  double* u_cells = scratch.cells.reserve(u.size + v.size);
  double* v_cells = u_cells + u.size;
  const T* us = u.values;
  const T* vs = v.values;
  double total = sum_chunks(u.size, parallel_for, scratch.partial, [&](int64_t begin, int64_t end) {
    return cells_range<T>(
        begin, end,
        [&](int64_t i) {
          const Cell cell = u_cell_at(i, levels);
          return std::make_pair(cell, us[i] - vs[cell.partner]);
        },
        p, u_cells);
  });
  total += sum_chunks(v.size, parallel_for, scratch.partial, [&](int64_t begin, int64_t end) {
    return cells_range<T>(
        begin, end,
        [&](int64_t j) {
          const Cell cell = v_cell_at(j, levels);
          return std::make_pair(cell, us[cell.partner] - vs[j]);
        },
        p, v_cells);
  });
  if (gu != nullptr) {
    for_chunks(u.size, parallel_for, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) gu[u.perm[i]] = static_cast<T>(u_grad(i, levels, u_cells, v_cells));
    });
    for_chunks(v.size, parallel_for, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) gv[v.perm[j]] = static_cast<T>(v_grad(j, levels, u_cells, v_cells));
    });
  }
  return total;
}

// Normalised cumulative masses of a sorted row (summed in double in sorted order, last level
// exactly 1), or i / n for a row without weights. Only the running sum is serial: the gather of
// the weights through the permutation, which misses the cache on long rows, is not.
template <typename T, typename ParallelFor>
void cumulative_levels(const T* weights, SortedRow<T> row, double* levels, const ParallelFor& parallel_for) {
  const int64_t n = row.size;
  if (weights == nullptr) {
    for_chunks(n, parallel_for, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) levels[i] = static_cast<double>(i + 1) / static_cast<double>(n);
    });
    return;
  }
  for_chunks(n, parallel_for, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) levels[i] = static_cast<double>(weights[row.perm[i]]);
  });
  double running = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    running += levels[i];
    levels[i] = running;
  }
  const double total = running;
  for_chunks(n, parallel_for, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) levels[i] /= total;
  });
  levels[n - 1] = 1.0;
}

// The counts of cumulative levels: below[i] = V levels strictly below U level i, upto[j] = U
// levels at or below V level j. Each chunk finds where it starts by a binary search
// (count_levels, as a GPU thread does for its own element), then walks both ascending arrays.
template <typename ParallelFor>
void merge_counts(const double* lu, int64_t n, const double* lv, int64_t m, uint32_t* below, uint32_t* upto,
                  const ParallelFor& parallel_for) {
  for_chunks(n, parallel_for, [&](int64_t begin, int64_t end) {
    int64_t j = count_levels<false>(lv, m, lu[begin]);
    for (int64_t i = begin; i < end; ++i) {
      while (j < m && lv[j] < lu[i]) ++j;
      below[i] = static_cast<uint32_t>(j);
    }
  });
  for_chunks(m, parallel_for, [&](int64_t begin, int64_t end) {
    int64_t i = count_levels<true>(lu, n, lv[begin]);
    for (int64_t j = begin; j < end; ++j) {
      while (i < n && lu[i] <= lv[j]) ++i;
      upto[j] = static_cast<uint32_t>(i);
    }
  });
}

// The OT cost of one sorted row and, when gu is given, its gradients; chunks of a long row
// run by `parallel_for` (Serial for a row of a batch).
template <typename T, typename ParallelFor>
double coupled_row(SortedRow<T> u, SortedRow<T> v, const T* wu, const T* wv, const CostParams& p, T* gu,
                   T* gv, RowScratch& scratch, const ParallelFor& parallel_for) {
  const int64_t n = u.size, m = v.size;
  if (wu == nullptr && wv == nullptr && n == m) {
    const double total = sum_chunks(n, parallel_for, scratch.partial, [&](int64_t begin, int64_t end) {
      return pairs_range(u, v, begin, end, p, gu, gv);
    });
    return total / static_cast<double>(n);
  }
  uint32_t* below = scratch.counts.reserve(n + m);
  uint32_t* upto = below + n;
  if (wu == nullptr && wv == nullptr) {
    const UniformLevels levels{n, m};
    for_chunks(n, parallel_for, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) below[i] = static_cast<uint32_t>(levels.v_below_u(i));
    });
    for_chunks(m, parallel_for, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) upto[j] = static_cast<uint32_t>(levels.u_upto_v(j));
    });
    return merged_row(u, v, Counted<UniformLevels>(levels, below, upto), p, gu, gv, scratch, parallel_for);
  }
  double* lu = scratch.levels.reserve(n + m);
  double* lv = lu + n;
  cumulative_levels(wu, u, lu, parallel_for);
  cumulative_levels(wv, v, lv, parallel_for);
  merge_counts(lu, n, lv, m, below, upto, parallel_for);
  return merged_row(u, v, Counted<CumulativeLevels>({lu, lv, n, m}, below, upto), p, gu, gv, scratch,
                    parallel_for);
}

template <typename T, typename ParallelFor>
void dominance_forward(const DominanceArgs<T>& a, const ParallelFor& parallel_for) {
  if (!known_cost(a.params.cost)) throw std::invalid_argument("aot_loss::dominance: unknown cost id");
  const int64_t rows = a.rows, n = a.n, m = a.m;
  Scratch<T> sorted(rows * (n + m));
  Scratch<uint32_t> perm(rows * (n + m));
  T* su = sorted.data();
  T* sv = su + rows * n;
  uint32_t* pu = perm.data();
  uint32_t* pv = pu + rows * n;

  // Phase 1: 2 * rows independent sorts (U and V of each row run on different threads).
  const int64_t width = std::max(n, m);
  parallel_for(0, 2 * rows, rows_per_task(width), [&](int64_t begin, int64_t end) {
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

  // Phase 2: the coupling, cost and gradients of each row; one row alone is split into chunks.
  const bool grad = a.grad_u != nullptr;
  auto row = [&](int64_t r, RowScratch& scratch, const auto& row_parallel_for) {
    const SortedRow<T> u{su + r * n, pu + r * n, n}, v{sv + r * m, pv + r * m, m};
    const T* wu = a.wu != nullptr ? a.wu + r * n : nullptr;
    const T* wv = a.wv != nullptr ? a.wv + r * m : nullptr;
    T* gu = grad ? a.grad_u + r * n : nullptr;
    T* gv = grad ? a.grad_v + r * m : nullptr;
    a.cost[r] = static_cast<T>(coupled_row(u, v, wu, wv, a.params, gu, gv, scratch, row_parallel_for));
  };
  if (rows == 1) {
    RowScratch scratch;
    row(0, scratch, parallel_for);
    return;
  }
  parallel_for(0, rows, rows_per_task(n + m), [&](int64_t begin, int64_t end) {
    RowScratch scratch;
    for (int64_t r = begin; r < end; ++r) row(r, scratch, Serial{});
  });
}

}  // namespace aot_loss::kernels
