// Runs the algorithms of the CUDA kernels on the host, for tests/test_cuda_paths_host.py:
// - "block": the phases of csrc/cuda/dominance_block.h, one row at a time, by SerialExec;
// - "threads": the same phases by CooperativeExec on 8 host threads meeting at a std::barrier,
//   as the threads of a CUDA block meet at __syncthreads (a missing barrier is a data race);
// - "long": the steps of csrc/cuda/dominance_long.h in the order dominance_cuda.cu launches
//   them, with a stable sort and a running sum in place of CUB's segmented radix sort and scan;
// - "unsort": the long path with the gradients written in sorted order and then put back in
//   input order (step 7), as the device does for rows of millions.
// Every loop runs its elements in ascending or descending order: a step that read what the
// same step writes would give different results in the two directions.
//
// Reads one problem from stdin:
//   dtype(f32|f64) path(block|threads|long|unsort) cost beta label_smoothing descending rows n m weighted need_grad
//   u[rows n] v[rows m], then wu[rows n] when weighted & 1 and wv[rows m] when weighted & 2
// and prints the rows' costs, then grad_u and grad_v when need_grad, one value per line.
#include <algorithm>
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "cuda/dominance_block.h"
#include "cuda/dominance_long.h"

namespace k = aot_loss::kernels;

namespace {

// strtod, unlike operator>>, reads nan and inf.
double read_number() {
  std::string token;
  std::cin >> token;
  return std::strtod(token.c_str(), nullptr);
}

template <typename F>
void loop(int64_t count, bool descending, const F& f) {
  for (int64_t i = 0; i < count; ++i) f(descending ? count - 1 - i : i);
}

struct StdBarrier {
  std::barrier<>* barrier;
  void operator()() const { barrier->arrive_and_wait(); }
};

// Rows one after the other, each by `threads` cooperating threads (0: SerialExec).
template <typename T>
void run_block(const k::DominanceArgs<T>& a, bool descending, int threads) {
  const int64_t n = a.n, m = a.m, p = k::sort_width(n + m);
  std::vector<k::key_t<T>> keys(p);
  std::vector<uint32_t> tags(p), counts(n + m);
  std::vector<double> levels(n + m), cells(n + m), scratch(threads);
  for (int64_t r = 0; r < a.rows; ++r) {
    k::RowWork<T> work{keys.data(), tags.data(), p, levels.data(), counts.data(), cells.data()};
    if (threads == 0) {
      k::SerialExec ex{descending};
      k::block_row(ex, k::row_io(a, r), work);
      continue;
    }
    std::barrier<> barrier(threads);
    std::vector<std::thread> group;
    for (int rank = 0; rank < threads; ++rank) {
      group.emplace_back([&, rank] {
        const k::CooperativeExec<StdBarrier> ex{rank, threads, scratch.data(), {&barrier}};
        k::RowWork<T> own = work;
        k::block_row(ex, k::row_io(a, r), own);
      });
    }
    for (auto& thread : group) thread.join();
  }
}

template <typename T>
void run_long(const k::DominanceArgs<T>& a, bool descending, bool unsort) {
  const int64_t rows = a.rows, n = a.n, m = a.m, total = rows * (n + m);
  const bool weighted = a.wu != nullptr || a.wv != nullptr, grid = weighted || n != m;
  std::vector<k::key_t<T>> keys(total);
  std::vector<uint32_t> index(total), perm(total), counts(grid ? total : 0);
  std::vector<int64_t> offsets(2 * rows + 1);
  std::vector<k::key_t<T>> sorted_keys(total);
  std::vector<T> sorted(total), grad_sorted(unsort ? total : 0);
  // as on the device, one buffer holds the sorted weights and, after the scan, the cells
  std::vector<double> scratch(grid ? total : 0), scanned(weighted ? total : 0), levels(weighted ? total : 0);
  k::LongRows<T> L{a,
                   keys.data(),
                   index.data(),
                   offsets.data(),
                   sorted_keys.data(),
                   perm.data(),
                   sorted.data(),
                   grid ? scratch.data() : nullptr,
                   weighted ? scanned.data() : nullptr,
                   weighted ? levels.data() : nullptr,
                   grid ? counts.data() : nullptr,
                   grid ? scratch.data() : nullptr,
                   unsort && a.grad_u != nullptr ? grad_sorted.data() : nullptr};
  loop(total, descending, [&](int64_t e) { k::long_key(L, e); });
  loop(2 * rows + 1, descending, [&](int64_t s) { k::long_offset(L, s); });
  for (int64_t s = 0; s < 2 * rows; ++s) {  // CUB's segmented radix sort is stable
    std::vector<int64_t> order(offsets[s + 1] - offsets[s]);
    std::iota(order.begin(), order.end(), offsets[s]);
    std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return keys[x] < keys[y]; });
    for (size_t i = 0; i < order.size(); ++i) {
      perm[offsets[s] + i] = index[order[i]];
      sorted_keys[offsets[s] + i] = keys[order[i]];
    }
  }
  if (grid) loop(total, descending, [&](int64_t e) { k::long_gather(L, e); });
  if (weighted) {
    for (int64_t s = 0; s < 2 * rows; ++s) {
      if ((s < rows ? a.wu : a.wv) == nullptr) continue;
      double running = 0.0;
      for (int64_t e = offsets[s]; e < offsets[s + 1]; ++e) scanned[e] = running += scratch[e];
    }
    loop(total, descending, [&](int64_t e) { k::long_level(L, e); });
  }
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    if (grid) {
      loop(n + m, descending, [&](int64_t c) { k::long_count(L, r * (n + m) + c); });
      loop(n + m, descending, [&](int64_t c) { sum += k::long_cell(L, r, c); });
    } else {
      loop(n, descending, [&](int64_t i) { sum += k::long_pair(L, r, i); });
    }
    a.cost[r] = static_cast<T>(grid ? sum : sum / static_cast<double>(n));
  }
  if (grid && a.grad_u != nullptr) loop(total, descending, [&](int64_t e) { k::long_grad(L, e); });
  if (L.grad_sorted != nullptr) {  // as on the device: pairs by the top 8 bits of the position, then scattered
    std::vector<uint32_t> positions(total);
    std::vector<T> grads(total);
    for (int64_t s = 0; s < 2 * rows; ++s) {
      const int64_t size = offsets[s + 1] - offsets[s];
      int bits = 1;
      while ((int64_t(1) << bits) < size) ++bits;
      const int shift = bits > 8 ? bits - 8 : 0;
      std::vector<int64_t> order(size);
      std::iota(order.begin(), order.end(), offsets[s]);
      std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return (perm[x] >> shift) < (perm[y] >> shift); });
      for (int64_t i = 0; i < size; ++i) {
        positions[offsets[s] + i] = perm[order[i]];
        grads[offsets[s] + i] = grad_sorted[order[i]];
      }
    }
    loop(total, descending, [&](int64_t e) { k::long_unsort(L, e, positions.data(), grads.data()); });
  }
}

template <typename T>
int run(const std::string& path, const k::CostParams& params, bool descending, int64_t rows, int64_t n, int64_t m,
        int weighted, bool need_grad) {
  std::vector<T> u(rows * n), v(rows * m), wu(weighted & 1 ? rows * n : 0), wv(weighted & 2 ? rows * m : 0);
  for (auto* values : {&u, &v, &wu, &wv}) {
    for (auto& x : *values) x = static_cast<T>(read_number());
  }
  if (!std::cin) return 2;
  std::vector<T> cost(rows), gu(rows * n), gv(rows * m);
  const k::DominanceArgs<T> args{u.data(),
                                 v.data(),
                                 weighted & 1 ? wu.data() : nullptr,
                                 weighted & 2 ? wv.data() : nullptr,
                                 rows,
                                 n,
                                 m,
                                 params,
                                 cost.data(),
                                 need_grad ? gu.data() : nullptr,
                                 need_grad ? gv.data() : nullptr};
  if (path == "block" || path == "threads") {
    run_block(args, descending, path == "threads" ? 8 : 0);
  } else {
    run_long(args, descending, path == "unsort");
  }
  for (T c : cost) std::printf("%.17g\n", static_cast<double>(c));
  if (need_grad) {
    for (T g : gu) std::printf("%.17g\n", static_cast<double>(g));
    for (T g : gv) std::printf("%.17g\n", static_cast<double>(g));
  }
  return 0;
}

}  // namespace

int main() {
  std::string dtype, path, cost;
  double beta, ls;
  int descending, weighted, need_grad;
  int64_t rows, n, m;
  std::cin >> dtype >> path >> cost >> beta >> ls >> descending >> rows >> n >> m >> weighted >> need_grad;
  if (!std::cin || rows < 1 || n < 1 || m < 1 || (path != "block" && path != "threads" && path != "long" && path != "unsort")) return 2;
  const k::CostParams params{k::cost_id(cost), beta, ls};
  return dtype == "f32" ? run<float>(path, params, descending, rows, n, m, weighted, need_grad)
                        : run<double>(path, params, descending, rows, n, m, weighted, need_grad);
}
