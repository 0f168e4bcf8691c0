// One row of the fused dominance cost computed by a group of threads that cooperate through
// barriers (a CUDA thread block), for rows of up to kBlockMaxRow values per sample.
//
// The algorithm is written as phases: each phase is a loop over independent elements, and
// a barrier separates it from the next. An executor supplies the loops and the barriers:
// CooperativeExec spreads each phase over a group of threads (a CUDA block, or host threads
// in the tests), SerialExec runs it on one host thread in either direction. Every value a
// phase reads was written before its barrier, so the result does not depend on the executor.
//
//   1. Sort: U and V together, as (side, order key, index) items in a bitonic network over
//      P = next power of two >= n + m items; the items are distinct, so the order is
//      that of a stable sort, U's items first, then V's, then the padding.
//   2. Equal sizes without weights: pairs u_(i), v_(i), mass 1 / n each.
//   3. Otherwise the merged grid of cells.h: levels (a scan of the sorted weights), counts,
//      cells, then each sample's gradient from its cells.
// Sums (the cost, the scan) use a fixed order for a given executor and block size, so
// results repeat bit for bit.
#pragma once

#include <cstdint>

#include "common/cells.h"
#include "common/costs.h"
#include "common/device.h"
#include "common/limits.h"
#include "common/dominance_args.h"
#include "common/sort.h"

namespace aot_loss::kernels {

constexpr uint32_t kSideBit = 0x80000000u;
constexpr uint32_t kIndexMask = 0x7FFFFFFFu;

// A row's inputs and outputs (row pointers; weights and gradients may be null).
template <typename T>
struct RowIo {
  const T* u;
  const T* v;
  const T* wu;
  const T* wv;
  int64_t n, m;
  CostParams params;
  T* cost;  // one value
  T* gu;    // (n) or nullptr
  T* gv;    // (m) or nullptr
};

// Row r of a call's arguments.
template <typename T>
AOT_HD RowIo<T> row_io(const DominanceArgs<T>& a, int64_t r) {
  const int64_t n = a.n, m = a.m;
  return {a.u + r * n,
          a.v + r * m,
          a.wu != nullptr ? a.wu + r * n : nullptr,
          a.wv != nullptr ? a.wv + r * m : nullptr,
          n,
          m,
          a.params,
          a.cost + r,
          a.grad_u != nullptr ? a.grad_u + r * n : nullptr,
          a.grad_v != nullptr ? a.grad_v + r * m : nullptr};
}

// A row's scratch. keys/tags (P items) live in fast memory (shared memory on a GPU); the
// rest is only touched by weighted or unequal rows. keys are reused for the sorted values.
template <typename T>
struct RowWork {
  key_t<T>* keys;   // (P)
  uint32_t* tags;   // (P) side bit | index
  int64_t p;        // P, a power of two >= n + m
  double* levels;   // (n + m) cumulative levels, weighted rows only
  uint32_t* counts; // (n + m)
  double* cells;    // (n + m) cell gradients
};

AOT_HD inline int64_t sort_width(int64_t items) {
  int64_t p = 1;
  while (p < items) p <<= 1;
  return p;
}

// Order of sort items: U before V, then by order key, then by index (ties stay in order).
template <typename K>
AOT_HD inline bool item_less(K ka, uint32_t ta, K kb, uint32_t tb) {
  if ((ta ^ tb) & kSideBit) return ta < tb;
  if (ka != kb) return ka < kb;
  return ta < tb;
}

template <typename T, typename Exec>
AOT_HD void block_sort(Exec& ex, const RowIo<T>& io, RowWork<T>& w) {
  using K = key_t<T>;
  K* keys = w.keys;
  uint32_t* tags = w.tags;
  const int64_t n = io.n, m = io.m;
  ex.each(w.p, [&](int64_t t) {
    if (t < n) {
      keys[t] = order_key(io.u[t]);
      tags[t] = static_cast<uint32_t>(t);
    } else if (t < n + m) {
      keys[t] = order_key(io.v[t - n]);
      tags[t] = kSideBit | static_cast<uint32_t>(t - n);
    } else {  // padding: after every V item, NaN keys included
      keys[t] = ~K(0);
      tags[t] = ~uint32_t(0);
    }
  });
  ex.sync();
  for (int64_t k = 2; k <= w.p; k <<= 1) {
    for (int64_t j = k >> 1; j > 0; j >>= 1) {
      ex.each(w.p / 2, [&](int64_t t) {
        // j is a power of two: lo = 2 j (t / j) + t % j by masks (a division here cost most
        // of the kernel's time on a GPU)
        const int64_t lo = ((t & ~(j - 1)) << 1) | (t & (j - 1)), hi = lo + j;
        const bool ascending = (lo & k) == 0;
        if (item_less(keys[hi], tags[hi], keys[lo], tags[lo]) == ascending) {
          const K key = keys[lo];
          keys[lo] = keys[hi];
          keys[hi] = key;
          const uint32_t tag = tags[lo];
          tags[lo] = tags[hi];
          tags[hi] = tag;
        }
      });
      ex.sync();
    }
  }
  // Sorted values over the keys, read from the inputs as the torch path gathers them.
  T* values = reinterpret_cast<T*>(keys);
  ex.each(n + m, [&](int64_t t) {
    const uint32_t index = tags[t] & kIndexMask;
    values[t] = t < n ? io.u[index] : io.v[index];
  });
  ex.sync();
}

template <typename T, typename Exec, typename Levels>
AOT_HD double block_merged(Exec& ex, const RowIo<T>& io, const RowWork<T>& w, const Levels& levels) {
  const int64_t n = io.n, m = io.m;
  const T* us = reinterpret_cast<const T*>(w.keys);
  const T* vs = us + n;
  double* cells = w.cells;
  const double total = ex.sum(n + m, [&](int64_t k) {
    return k < n ? u_cell(k, us, vs, levels, io.params, cells + k)
                 : v_cell(k - n, us, vs, levels, io.params, cells + k);
  });
  if (io.gu != nullptr) {
    ex.each(n + m, [&](int64_t k) {
      if (k < n) {
        io.gu[w.tags[k] & kIndexMask] = static_cast<T>(u_grad(k, levels, cells, cells + n));
      } else {
        io.gv[w.tags[k] & kIndexMask] = static_cast<T>(v_grad(k - n, levels, cells, cells + n));
      }
    });
  }
  return total;
}

// Normalised cumulative masses of one side's sorted weights (or i / size without weights).
template <typename T, typename Exec>
AOT_HD void block_levels(Exec& ex, const T* weights, const uint32_t* tags, int64_t size, double* levels) {
  if (weights == nullptr) {
    ex.each(size, [&](int64_t i) { levels[i] = static_cast<double>(i + 1) / static_cast<double>(size); });
    return;
  }
  ex.each(size, [&](int64_t i) { levels[i] = static_cast<double>(weights[tags[i] & kIndexMask]); });
  ex.sync();
  ex.inclusive_scan(levels, size);  // ends with a barrier
  const double total = levels[size - 1];
  ex.sync();  // every thread has read the total before it is overwritten
  ex.each(size, [&](int64_t i) { levels[i] = i + 1 < size ? levels[i] / total : 1.0; });
}

// The whole row: the cost to io.cost (by the executor's leader) and the gradients.
template <typename T, typename Exec>
AOT_HD void block_row(Exec& ex, const RowIo<T>& io, RowWork<T>& w) {
  block_sort(ex, io, w);
  const int64_t n = io.n, m = io.m;
  double total;
  if (io.wu == nullptr && io.wv == nullptr && n == m) {
    const T* us = reinterpret_cast<const T*>(w.keys);
    const T* vs = us + n;
    const T inv_n = T(1) / static_cast<T>(n);
    total = ex.sum(n, [&](int64_t i) {
      T slope;
      const T h = cost_and_slope<T>(us[i] - vs[i], io.params, &slope);
      if (io.gu != nullptr) {
        io.gu[w.tags[i] & kIndexMask] = slope * inv_n;
        io.gv[w.tags[n + i] & kIndexMask] = -slope * inv_n;
      }
      return static_cast<double>(h);
    });
    total /= static_cast<double>(n);
  } else {
    uint32_t* below = w.counts;
    uint32_t* upto = below + n;
    if (io.wu == nullptr && io.wv == nullptr) {
      const UniformLevels uniform{n, m};
      ex.each(n + m, [&](int64_t k) {
        below[k] = static_cast<uint32_t>(k < n ? uniform.v_below_u(k) : uniform.u_upto_v(k - n));
      });
      ex.sync();
      total = block_merged(ex, io, w, Counted<UniformLevels>(uniform, below, upto));
    } else {
      double* lu = w.levels;
      double* lv = lu + n;
      block_levels(ex, io.wu, w.tags, n, lu);
      block_levels(ex, io.wv, w.tags + n, m, lv);
      ex.sync();
      ex.each(n + m, [&](int64_t k) {
        below[k] = k < n ? count_levels<false>(lv, m, lu[k]) : count_levels<true>(lu, n, lv[k - n]);
      });
      ex.sync();
      const CumulativeLevels cumulative{lu, lv, n, m};
      total = block_merged(ex, io, w, Counted<CumulativeLevels>(cumulative, below, upto));
    }
  }
  if (ex.leader()) *io.cost = static_cast<T>(total);
}

// Runs the phases on one host thread, each phase's elements in ascending or descending
// order: a phase that read what the same phase writes would differ between the two.
struct SerialExec {
  bool descending = false;
  template <typename F>
  void each(int64_t count, const F& f) const {
    for (int64_t i = 0; i < count; ++i) f(descending ? count - 1 - i : i);
  }
  void sync() const {}
  bool leader() const { return true; }
  template <typename F>
  double sum(int64_t count, const F& f) const {
    double total = 0.0;
    each(count, [&](int64_t i) { total += f(i); });
    return total;
  }
  void inclusive_scan(double* x, int64_t count) const {
    for (int64_t i = 1; i < count; ++i) x[i] += x[i - 1];
  }
};

// One of `size` threads (a power of two) that run the phases together and meet at
// `barrier()`: the threads of a CUDA block (barrier = __syncthreads, in dominance_cuda.cu),
// or host threads meeting at a std::barrier, which is how the tests run this very code,
// barriers included. `scratch` is `size` doubles shared by the group.
template <typename Barrier>
struct CooperativeExec {
  int64_t rank, size;
  double* scratch;
  Barrier barrier;

  template <typename F>
  AOT_HD void each(int64_t count, const F& f) const {
    for (int64_t i = rank; i < count; i += size) f(i);
  }
  AOT_HD void sync() const { barrier(); }
  AOT_HD bool leader() const { return rank == 0; }

  // Each thread sums its strided elements in order, then a tree over the threads: the same
  // order on every run with the same group size.
  template <typename F>
  AOT_HD double sum(int64_t count, const F& f) const {
    double local = 0.0;
    each(count, [&](int64_t i) { local += f(i); });
    scratch[rank] = local;
    barrier();
    for (int64_t half = size / 2; half > 0; half /= 2) {
      if (rank < half) scratch[rank] += scratch[rank + half];
      barrier();
    }
    const double total = scratch[0];
    barrier();  // every thread has read it before the scratch is reused
    return total;
  }

  // Chunks of consecutive elements per thread: scan each, scan the chunk totals, add.
  AOT_HD void inclusive_scan(double* x, int64_t count) const {
    const int64_t chunk = (count + size - 1) / size;
    const int64_t begin = k_min(rank * chunk, count), end = k_min(begin + chunk, count);
    double running = 0.0;
    for (int64_t i = begin; i < end; ++i) x[i] = running += x[i];
    scratch[rank] = running;
    barrier();
    if (rank == 0) {
      double offset = 0.0;
      for (int64_t t = 0; t < size; ++t) {
        const double chunk_total = scratch[t];
        scratch[t] = offset;
        offset += chunk_total;
      }
    }
    barrier();
    for (int64_t i = begin; i < end; ++i) x[i] += scratch[rank];
    barrier();
  }
};

}  // namespace aot_loss::kernels
