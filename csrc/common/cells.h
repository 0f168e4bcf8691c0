// The merged quantile grid of two sorted samples, as functions of one element each, so that
// the CPU kernel loops over them and a GPU thread owns one. Semantics of aot_loss/_coupling.py:
//
// Every level (cumulative mass) of either sample ends one cell of the merged grid, K = n + m
// cells in all, ordered by level with U first on ties. The cell that ends at U level i
// couples u_(i) with v_(c), c = the number of V levels strictly below it; the cell that ends
// at V level j couples v_(j) with u_(c'), c' = the number of U levels at or below it (clamped
// to n - 1: only the final zero-length cell reaches n). A cell's mass is its level minus the
// level before it in the merged order, max(u level i - 1, v level c - 1).
//
// The cost of sample u_(i) collects its own cell and the V cells that couple with it, which
// are those between U levels i - 1 and i: a contiguous range of V indices, so each gradient
// is a short sum in a fixed order, with no atomics.
#pragma once

#include <cstdint>

#include "common/costs.h"
#include "common/device.h"

namespace aot_loss::kernels {

// Uniform masses: exact integer levels in units of 1 / (n m), U level i at (i + 1) m and
// V level j at (j + 1) n, so ties between the two grids are found exactly.
struct UniformLevels {
  int64_t n, m;
  AOT_HD int64_t u(int64_t i) const { return (i + 1) * m; }
  AOT_HD int64_t v(int64_t j) const { return (j + 1) * n; }
  AOT_HD int64_t v_below_u(int64_t i) const { return quot_rem((i + 1) * m - 1, n).quot; }
  AOT_HD int64_t u_upto_v(int64_t j) const { return quot_rem((j + 1) * n, m).quot; }
  AOT_HD double scale() const { return 1.0 / (static_cast<double>(n) * static_cast<double>(m)); }
};

// Weighted masses: normalised cumulative levels, the last exactly 1 (no counts: see Counted).
struct CumulativeLevels {
  const double* lu;
  const double* lv;
  int64_t n, m;
  AOT_HD double u(int64_t i) const { return lu[i]; }
  AOT_HD double v(int64_t j) const { return lv[j]; }
  AOT_HD double scale() const { return 1.0; }
};

// Levels whose two counts were computed once into arrays (by the closed form of
// UniformLevels, count_levels or a merge): every cell and gradient reads them several times.
template <typename Base>
struct Counted : Base {
  const uint32_t* below;  // (n) V levels strictly below U level i
  const uint32_t* upto;   // (m) U levels at or below V level j
  AOT_HD Counted(const Base& base, const uint32_t* below_, const uint32_t* upto_)
      : Base(base), below(below_), upto(upto_) {}
  AOT_HD int64_t v_below_u(int64_t i) const { return below[i]; }
  AOT_HD int64_t u_upto_v(int64_t j) const { return upto[j]; }
};

// Number of entries of the ascending `levels` below x (strictly, or at or below).
template <bool kInclusive>
AOT_HD inline uint32_t count_levels(const double* levels, int64_t size, double x) {
  int64_t lo = 0, hi = size;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (kInclusive ? levels[mid] <= x : levels[mid] < x) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return static_cast<uint32_t>(lo);
}

// Where a cell sits: its mass and the index of the other sample's element it couples with.
struct Cell {
  double mass;
  int64_t partner;
};

// The cell that ends at U level i: it couples u_(i) with v_(partner).
template <typename Levels>
AOT_HD inline Cell u_cell_at(int64_t i, const Levels& lv) {
  using Level = decltype(lv.u(0));
  const int64_t c = lv.v_below_u(i);
  const Level prev = k_max(i > 0 ? lv.u(i - 1) : Level(0), c > 0 ? lv.v(c - 1) : Level(0));
  return {static_cast<double>(lv.u(i) - prev) * lv.scale(), k_min<int64_t>(c, lv.m - 1)};
}

// The cell that ends at V level j: it couples u_(partner) with v_(j).
template <typename Levels>
AOT_HD inline Cell v_cell_at(int64_t j, const Levels& lv) {
  using Level = decltype(lv.u(0));
  const int64_t c = lv.u_upto_v(j);
  const Level prev = k_max(j > 0 ? lv.v(j - 1) : Level(0), c > 0 ? lv.u(c - 1) : Level(0));
  return {static_cast<double>(lv.v(j) - prev) * lv.scale(), k_min<int64_t>(c, lv.n - 1)};
}

// mass * h(d) of a cell; writes mass * h'(d), the cell's gradient (that of u; v's is the negative).
// A cell of zero length costs h(0) * 0 = 0: its own d may be NaN or infinite (a sample of weight
// 0 holding NaN or -inf, a cost that overflows), and h(d) * 0 would be NaN.
template <typename T>
AOT_HD inline double cell_cost(const Cell& cell, T d, const CostParams& p, double* grad) {
  T slope;
  const T h = cost_and_slope<T>(cell.mass > 0.0 ? d : T(0), p, &slope);
  *grad = cell.mass * static_cast<double>(slope);
  return cell.mass * static_cast<double>(h);
}

// The cell that ends at U level i: returns mass * h(u_(i) - v_(c)), writes mass * h'.
template <typename T, typename Levels>
AOT_HD inline double u_cell(int64_t i, const T* us, const T* vs, const Levels& lv, const CostParams& p,
                            double* grad) {
  const Cell cell = u_cell_at(i, lv);
  return cell_cost<T>(cell, us[i] - vs[cell.partner], p, grad);
}

// The cell that ends at V level j.
template <typename T, typename Levels>
AOT_HD inline double v_cell(int64_t j, const T* us, const T* vs, const Levels& lv, const CostParams& p,
                            double* grad) {
  const Cell cell = v_cell_at(j, lv);
  return cell_cost<T>(cell, us[cell.partner] - vs[j], p, grad);
}

// d cost / d u_(i): the V cells between U levels i - 1 and i (every V cell after the last U
// level, for the last), then its own cell, in the merged order.
template <typename Levels>
AOT_HD inline double u_grad(int64_t i, const Levels& lv, const double* u_cells, const double* v_cells) {
  const int64_t begin = i > 0 ? lv.v_below_u(i - 1) : 0;
  const int64_t end = i + 1 < lv.n ? lv.v_below_u(i) : lv.m;
  double g = 0.0;
  for (int64_t j = begin; j < end; ++j) g += v_cells[j];
  return g + u_cells[i];
}

// d cost / d v_(j): minus the U cells between V levels j - 1 and j, and its own cell.
template <typename Levels>
AOT_HD inline double v_grad(int64_t j, const Levels& lv, const double* u_cells, const double* v_cells) {
  const int64_t begin = j > 0 ? lv.u_upto_v(j - 1) : 0;
  const int64_t end = j + 1 < lv.m ? lv.u_upto_v(j) : lv.n;
  double g = 0.0;
  for (int64_t i = begin; i < end; ++i) g += u_cells[i];
  return -(g + v_cells[j]);
}

}  // namespace aot_loss::kernels
