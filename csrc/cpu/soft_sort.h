// Soft sort (Blondel et al. 2020, torchsort's soft_sort) by pool-adjacent-violators on a
// stack: torch-free, raw pointers, parallelism supplied by the caller. Semantics and the
// block-relative levels are those of aot_loss/ops/pav.py:
//   z = stable ascending sort of a row, delta = 1 / strength;
//   blocks [a, a + L) pool while the level of a block is not above the next one's;
//   L2: level = mean(z) - delta (a + (L - 1) / 2), value_i = level + i delta;
//   KL: level = log_span(L) - logsumexp(-z) - delta a, log_span(L) = log sum_{k<L} e^{-k delta};
//   d value_i / d z_j = coef_j for every i, j in a block (1 / L, or softmax(-z) over it).
// The forward writes, per sorted position, state = (block start << 32) | permutation, and
// the backward rebuilds coef from it. Levels and sums are in double whatever T is.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/chunks.h"
#include "common/scratch.h"
#include "common/sort.h"

namespace aot_loss::kernels {

template <typename T>
struct SoftSortArgs {
  const T* x;  // (rows, n), contiguous
  int64_t rows, n;
  double delta;  // 1 / strength
  bool kl;       // KL regularisation, else L2
  T* values;      // (rows, n) out: soft-sorted values, ascending
  int64_t* state;  // (rows, n) out: (first sorted index of the block << 32) | sort permutation
};

struct PavStack {
  Scratch<int64_t> start;
  Scratch<double> length, stat, level;
  int64_t top = 0;
  explicit PavStack(int64_t n) : start(n), length(n), stat(n), level(n) {}
};

class LogSpan {  // log(sum_{k < L} exp(-k delta)) = log(1 - e^{-L delta}) - log(1 - e^{-delta})
 public:
  explicit LogSpan(double delta) : delta_(delta), denominator_(std::log(-std::expm1(-delta))) {}
  double operator()(double length) const { return std::log(-std::expm1(-length * delta_)) - denominator_; }

 private:
  double delta_, denominator_;
};

inline double log_add_exp(double a, double b) {
  const double top = std::max(a, b);
  if (std::isinf(top)) return top;  // inf - inf would be NaN: lse with an infinite term is that term
  return top + std::log1p(std::exp(std::min(a, b) - top));
}

template <typename T>
void soft_sort_row(const T* x, int64_t n, const SoftSortArgs<T>& a, const LogSpan& log_span, T* values,
                   int64_t* state, T* sorted, uint32_t* perm32, SortBuffers<T>& scratch, PavStack& s) {
  stable_argsort(x, n, sorted, perm32, scratch);
  const double delta = a.delta;
  auto level = [&](int64_t b) {
    const double first = static_cast<double>(s.start[b]);
    if (a.kl) return log_span(s.length[b]) - s.stat[b] - delta * first;
    return s.stat[b] / s.length[b] - delta * (first + (s.length[b] - 1) / 2);
  };
  s.top = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = s.top++;
    const double z = static_cast<double>(sorted[i]);
    s.start[b] = i;
    s.length[b] = 1;
    s.stat[b] = a.kl ? -z : z;
    s.level[b] = level(b);
    // Pool while the order is violated; `<=` pools ties, as torchsort does.
    while (s.top >= 2 && s.level[s.top - 2] <= s.level[s.top - 1]) {
      const int64_t l = s.top - 2, r = s.top - 1;
      s.stat[l] = a.kl ? log_add_exp(s.stat[l], s.stat[r]) : s.stat[l] + s.stat[r];
      s.length[l] += s.length[r];
      s.level[l] = level(l);
      --s.top;
    }
  }
  for (int64_t b = 0; b < s.top; ++b) {
    const int64_t first = s.start[b];
    const int64_t end = first + static_cast<int64_t>(s.length[b]);
    const double length = s.length[b];
    const double base = a.kl ? log_span(length) - s.stat[b] : s.stat[b] / length - delta * (length - 1) / 2;
    for (int64_t i = first; i < end; ++i) {
      values[i] = static_cast<T>(base + delta * static_cast<double>(i - first));
      state[i] = static_cast<int64_t>((static_cast<uint64_t>(first) << 32) | perm32[i]);
    }
  }
}

// Rows in parallel; scratch is allocated once per chunk of rows, never per element.
template <typename T, typename ParallelFor>
void soft_sort_forward(const SoftSortArgs<T>& a, const ParallelFor& parallel_for) {
  const int64_t n = a.n;
  const LogSpan log_span(a.delta);
  parallel_for(0, a.rows, rows_per_task(n), [&](int64_t begin, int64_t end) {
    SortBuffers<T> scratch(n);
    Scratch<uint32_t> perm32(n);
    Scratch<T> sorted(n);
    PavStack stack(n);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t o = r * n;
      soft_sort_row<T>(a.x + o, n, a, log_span, a.values + o, a.state + o, sorted.data(), perm32.data(), scratch,
                       stack);
    }
  });
}

// grad_x[perm[j]] = coef[j] * (sum of grad over j's block), row by row, with coef = 1 / L
// (L2) or softmax(-x[perm]) over the block (KL).
template <typename T, typename ParallelFor>
void soft_sort_backward(const T* grad, const T* x, const int64_t* state, bool kl, int64_t rows, int64_t n,
                        T* grad_x, const ParallelFor& parallel_for) {
  parallel_for(0, rows, rows_per_task(n), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t o = r * n;
      const T* xr = x + o;
      T* gr = grad_x + o;
      auto perm = [&](int64_t i) { return static_cast<int64_t>(static_cast<uint64_t>(state[o + i]) & 0xFFFFFFFFu); };
      for (int64_t i = 0; i < n;) {
        const int64_t first = state[o + i] >> 32;
        int64_t j = i;
        double total = 0.0, top = -INFINITY;
        for (; j < n && (state[o + j] >> 32) == first; ++j) {
          total += static_cast<double>(grad[o + j]);
          if (kl) top = std::max(top, -static_cast<double>(xr[perm(j)]));
        }
        if (!kl) {
          const double share = total / static_cast<double>(j - i);
          for (int64_t k = i; k < j; ++k) gr[perm(k)] = static_cast<T>(share);
        } else {
          double mass = 0.0;
          for (int64_t k = i; k < j; ++k) mass += std::exp(-static_cast<double>(xr[perm(k)]) - top);
          for (int64_t k = i; k < j; ++k) {
            gr[perm(k)] = static_cast<T>(total * std::exp(-static_cast<double>(xr[perm(k)]) - top) / mass);
          }
        }
        i = j;
      }
    }
  });
}

}  // namespace aot_loss::kernels
