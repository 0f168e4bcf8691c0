// The steps of the CUDA path for rows longer than kBlockMaxRow values per sample, each a
// function of one element, so that the grid-stride loops of dominance_cuda.cu and the host
// test (tests/csrc/cuda_paths_host.cpp) run the same code. Between steps the device
// runs CUB: a stable segmented radix sort of the keys (step 1 -> 2) and, for weighted
// sides, an inclusive scan of each row's sorted weights (step 2 -> 3). The gradients are
// scattered to the inputs' positions by steps 5a and 6, or, for very long rows, written in
// sorted order and put back in two steps (the "un-sort", step 7): a scatter over tens of
// megabytes misses the L2 cache on every element.
//
// Layout: U's rows, then V's rows, in one array of rows * (n + m) elements ("sample
// order": U row r at r n, V row r at rows n + r m), so one segmented sort serves both.
// The grid's cells and counts are per row instead: row r at r (n + m), U's levels first.
#pragma once

#include <cstdint>

#include "common/cells.h"
#include "common/costs.h"
#include "common/device.h"
#include "common/dominance_args.h"
#include "common/sort.h"

namespace aot_loss::kernels {

template <typename T>
struct LongRows {
  DominanceArgs<T> a;
  key_t<T>* keys;      // sample order: order keys to sort
  uint32_t* index;     // sample order: positions in the row, sorted along
  int64_t* offsets;    // 2 rows + 1 segment starts (U's rows, then V's)
  const key_t<T>* sorted_keys;  // sample order: the keys, sorted
  const uint32_t* perm;  // sample order: the sorted positions
  T* sorted;           // sample order: sorted values (merged grid only)
  double* weights;     // sample order: sorted weights (weighted sides only)
  const double* scanned;  // sample order: their inclusive sums per row
  double* levels;      // sample order: cumulative levels (weighted rows only)
  uint32_t* counts;    // row order: below (n) then upto (m)
  double* cells;       // row order: cell gradients, U's cells first
  T* grad_sorted;      // sample order: gradients to un-sort (null: scattered directly)

  AOT_HD int64_t total() const { return a.rows * (a.n + a.m); }
  AOT_HD int64_t total_u() const { return a.rows * a.n; }
  AOT_HD bool is_u(int64_t e) const { return e < total_u(); }
  // position of sample-order element e within its row, and the start of its row
  AOT_HD int64_t local(int64_t e) const { return is_u(e) ? quot_rem(e, a.n).rem : quot_rem(e - total_u(), a.m).rem; }
  AOT_HD const T* us(int64_t r) const { return sorted + r * a.n; }
  AOT_HD const T* vs(int64_t r) const { return sorted + total_u() + r * a.m; }
  AOT_HD const uint32_t* pu(int64_t r) const { return perm + r * a.n; }
  AOT_HD const uint32_t* pv(int64_t r) const { return perm + total_u() + r * a.m; }
  AOT_HD const double* lu(int64_t r) const { return levels + r * a.n; }
  AOT_HD const double* lv(int64_t r) const { return levels + total_u() + r * a.m; }

  // f(levels) with the row's levels: uniform (exact integers) or cumulative, counts read back.
  template <typename F>
  AOT_HD void with_levels(int64_t r, const F& f) const {
    const uint32_t* below = counts + r * (a.n + a.m);
    if (levels == nullptr) {
      f(Counted<UniformLevels>(UniformLevels{a.n, a.m}, below, below + a.n));
    } else {
      f(Counted<CumulativeLevels>(CumulativeLevels{lu(r), lv(r), a.n, a.m}, below, below + a.n));
    }
  }
};

// 1. Key and position of element e, and the start of segment s (0 <= s <= 2 rows).
template <typename T>
AOT_HD inline void long_key(const LongRows<T>& L, int64_t e) {
  L.keys[e] = order_key(L.is_u(e) ? L.a.u[e] : L.a.v[e - L.total_u()]);
  L.index[e] = static_cast<uint32_t>(L.local(e));
}

template <typename T>
AOT_HD inline void long_offset(const LongRows<T>& L, int64_t s) {
  L.offsets[s] = s <= L.a.rows ? s * L.a.n : L.total_u() + (s - L.a.rows) * L.a.m;
}

// 2. Merged grid only: the sorted value of element e, decoded from its sorted key (the same
// value up to the sign of zero and the NaN payload, which no cost tells apart; a gather
// from the input would miss the cache on every element of a long row), and its weight when
// its side has weights.
template <typename T>
AOT_HD inline void long_gather(const LongRows<T>& L, int64_t e) {
  L.sorted[e] = key_value<T>(L.sorted_keys[e]);
  const bool u_side = L.is_u(e);
  const T* w = u_side ? L.a.wu : L.a.wv;
  if (L.weights != nullptr && w != nullptr) {
    const int64_t source = (u_side ? e : e - L.total_u()) - L.local(e) + L.perm[e];
    L.weights[e] = static_cast<double>(w[source]);
  }
}

// 3. The level of element e: its scanned mass over the row's total (the last exactly 1), or
// the exact step (i + 1) / size on a side without weights, as on the CPU.
template <typename T>
AOT_HD inline void long_level(const LongRows<T>& L, int64_t e) {
  const bool u_side = L.is_u(e);
  const int64_t size = u_side ? L.a.n : L.a.m, i = L.local(e);
  if ((u_side ? L.a.wu : L.a.wv) == nullptr) {
    L.levels[e] = static_cast<double>(i + 1) / static_cast<double>(size);
  } else {
    L.levels[e] = i + 1 < size ? L.scanned[e] / L.scanned[e + (size - 1 - i)] : 1.0;
  }
}

// 4. Count c of row order element e = r (n + m) + c: V levels below U level c, or U levels at
// or below V level c - n.
template <typename T>
AOT_HD inline void long_count(const LongRows<T>& L, int64_t e) {
  const int64_t n = L.a.n, m = L.a.m;
  const QuotRem rc = quot_rem(e, n + m);  // C++17: a lambda cannot capture structured bindings
  const int64_t r = rc.quot, c = rc.rem;
  if (L.levels == nullptr) {
    const UniformLevels uniform{n, m};
    L.counts[e] = static_cast<uint32_t>(c < n ? uniform.v_below_u(c) : uniform.u_upto_v(c - n));
  } else {
    L.counts[e] = c < n ? count_levels<false>(L.lv(r), m, L.lu(r)[c]) : count_levels<true>(L.lu(r), n, L.lv(r)[c - n]);
  }
}

// 5a. Equal sizes without weights: the cost term h(u_(i) - v_(i)) of row r and both
// gradients, the values decoded straight from the sorted keys (step 2 is skipped).
template <typename T>
AOT_HD inline double long_pair(const LongRows<T>& L, int64_t r, int64_t i) {
  const int64_t n = L.a.n;
  const T u = key_value<T>(L.sorted_keys[r * n + i]), v = key_value<T>(L.sorted_keys[L.total_u() + r * n + i]);
  T slope;
  const T h = cost_and_slope<T>(u - v, L.a.params, &slope);
  if (L.a.grad_u != nullptr) {
    const T inv_n = T(1) / static_cast<T>(n);
    if (L.grad_sorted != nullptr) {
      L.grad_sorted[r * n + i] = slope * inv_n;
      L.grad_sorted[L.total_u() + r * n + i] = -slope * inv_n;
    } else {
      L.a.grad_u[r * n + L.pu(r)[i]] = slope * inv_n;
      L.a.grad_v[r * n + L.pv(r)[i]] = -slope * inv_n;
    }
  }
  return static_cast<double>(h);
}

// 5b. Otherwise: the cost term of cell c of row r (cells.h); its gradient into `cells`.
template <typename T>
AOT_HD inline double long_cell(const LongRows<T>& L, int64_t r, int64_t c) {
  const int64_t n = L.a.n;
  double* cells = L.cells + r * (n + L.a.m);
  double term = 0.0;
  L.with_levels(r, [&](const auto& levels) {
    term = c < n ? u_cell(c, L.us(r), L.vs(r), levels, L.a.params, cells + c)
                 : v_cell(c - n, L.us(r), L.vs(r), levels, L.a.params, cells + c);
  });
  return term;
}

// 6. The gradient of the sample at row order element e, from its cells.
template <typename T>
AOT_HD inline void long_grad(const LongRows<T>& L, int64_t e) {
  const int64_t n = L.a.n, m = L.a.m;
  const QuotRem rc = quot_rem(e, n + m);  // C++17: a lambda cannot capture structured bindings
  const int64_t r = rc.quot, c = rc.rem;
  const double* cells = L.cells + r * (n + m);
  L.with_levels(r, [&](const auto& levels) {
    if (c < n) {
      const T g = static_cast<T>(u_grad(c, levels, cells, cells + n));
      (L.grad_sorted != nullptr ? L.grad_sorted[r * n + c] : L.a.grad_u[r * n + L.pu(r)[c]]) = g;
    } else {
      const T g = static_cast<T>(v_grad(c - n, levels, cells, cells + n));
      (L.grad_sorted != nullptr ? L.grad_sorted[L.total_u() + r * m + c - n] : L.a.grad_v[r * m + L.pv(r)[c - n]]) = g;
    }
  });
}

// 7. The un-sort: gradient `grads[e]` to position `positions[e]` of element e's row. Called
// with (perm, grad_sorted) it is a plain scatter; the device first sorts those pairs of each
// row by the top 8 bits of the position (one radix pass) and passes the result: the same
// scatter, but each stretch of elements then writes into a window of 1/256 of the row, which
// stays in the L2 cache.
template <typename T>
AOT_HD inline void long_unsort(const LongRows<T>& L, int64_t e, const uint32_t* positions, const T* grads) {
  const int64_t position = e - L.local(e) + positions[e];  // in sample order
  if (L.is_u(e)) {
    L.a.grad_u[position] = grads[e];
  } else {
    L.a.grad_v[position - L.total_u()] = grads[e];
  }
}

}  // namespace aot_loss::kernels
