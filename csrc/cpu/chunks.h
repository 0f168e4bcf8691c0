// How the CPU kernels split their work among threads (the caller's parallel_for, at::parallel_for
// through the stable ABI): rows in groups of about kRowGrain values, and one long row in chunks
// of kChunk elements.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace aot_loss::kernels {

// Rows per parallel task for rows of `width` values: ~4096 values, 10-40 us of sorting,
// coupling or pooling, well above a thread hand-off. A larger grain leaves many short rows on
// one thread (32768 values put all of rows (1024, 16) or (4096, 8) in one task).
constexpr int64_t kRowGrain = 4096;
inline int64_t rows_per_task(int64_t width) {
  return std::max<int64_t>(1, kRowGrain / std::max<int64_t>(width, 1));
}

// One row's work is split into chunks of kChunk elements (pairs, cells or samples of one
// side). A row's cost is the sum of its chunks' partial sums in chunk order, so it is the same
// whether the chunks run on one thread or many, and whether the row is alone or one of a
// batch; chunks of 32768 elements take 50-200 us, far above a thread hand-off.
constexpr int64_t kChunk = 32768;

// Runs f(begin, end) on the caller's thread: the rows of a batch are already spread over the
// threads, so their chunks are not.
struct Serial {
  template <typename F>
  void operator()(int64_t begin, int64_t end, int64_t /*grain*/, const F& f) const {
    if (begin < end) f(begin, end);
  }
};

// f(begin, end) over the chunks of [0, count), by `parallel_for` when there are several.
template <typename ParallelFor, typename F>
void for_chunks(int64_t count, const ParallelFor& parallel_for, const F& f) {
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) f(c * kChunk, std::min(count, (c + 1) * kChunk));
  };
  if (chunks <= 1) {
    run(0, chunks);
  } else {
    parallel_for(0, chunks, 1, run);
  }
}

// Sum of f(begin, end) over the chunks of [0, count), added in chunk order.
template <typename ParallelFor, typename F>
double sum_chunks(int64_t count, const ParallelFor& parallel_for, std::vector<double>& partial, const F& f) {
  if (count <= kChunk) return f(0, count);
  partial.resize(static_cast<size_t>((count + kChunk - 1) / kChunk));
  for_chunks(count, parallel_for, [&](int64_t begin, int64_t end) { partial[begin / kChunk] = f(begin, end); });
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace aot_loss::kernels
