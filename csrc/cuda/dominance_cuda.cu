// CUDA kernels of the fused dominance cost. Torch-free: the binding
// (csrc/cuda/dominance_cuda.cpp) allocates outputs and scratch with torch and calls the
// launchers of dominance_cuda.h.
//
// Rows of up to kBlockMaxRow values per sample: one thread block per row runs the phases of
// dominance_block.h (a bitonic sort of U and V together in shared memory, then the pairs or
// the merged grid), one launch in all.
// Longer rows: the steps of dominance_long.h in grid-stride kernels around CUB's stable
// radix sort of the order keys (U's and V's rows as the segments of one segmented sort, or a
// device-wide sort each when they are few) and scan; per-row sums over fixed tiles, so
// results repeat bit for bit. Rows of millions put their gradients back in input order by
// a one-pass radix sort on the position's top bits, then a scatter that stays in the L2
// cache (dominance_long.h, step 7).
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <cstdint>

#include "common/cells.h"
#include "cuda/dominance_block.h"
#include "cuda/dominance_cuda.h"
#include "cuda/dominance_long.h"
#include "common/sort.h"

namespace aot_loss::cuda {
namespace {

namespace k = aot_loss::kernels;

// The barrier of dominance_block.h's CooperativeExec on a thread block.
struct SyncThreads {
  AOT_HD void operator()() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
};

// ---------------------------------------------------------------------------------------
// Short rows: one block per row.

template <typename T>
__global__ void __launch_bounds__(1024) block_rows_kernel(k::DominanceArgs<T> a, int64_t p, double* levels,
                                                           uint32_t* counts, double* cells) {
  extern __shared__ double shared[];  // the executor's doubles first: every part stays aligned
  const int64_t r = blockIdx.x, width = a.n + a.m;
  const k::CooperativeExec<SyncThreads> ex{threadIdx.x, blockDim.x, shared, {}};
  auto* keys = reinterpret_cast<k::key_t<T>*>(shared + blockDim.x);
  auto* tags = reinterpret_cast<uint32_t*>(keys + p);
  k::RowWork<T> w{keys,
                  tags,
                  p,
                  levels != nullptr ? levels + r * width : nullptr,
                  counts != nullptr ? counts + r * width : nullptr,
                  cells != nullptr ? cells + r * width : nullptr};
  k::block_row(ex, k::row_io(a, r), w);
}

struct BlockPlan {
  int64_t p;
  unsigned threads;
  size_t shared_bytes;
};

template <typename T>
BlockPlan block_plan(int64_t n, int64_t m) {
  const int64_t p = k::sort_width(n + m);
  unsigned threads = 32;
  while (threads < 1024 && 2 * static_cast<int64_t>(threads) < p) threads <<= 1;
  const size_t bytes = threads * sizeof(double) + p * (sizeof(k::key_t<T>) + sizeof(uint32_t));
  return {p, threads, bytes};
}

// ---------------------------------------------------------------------------------------
// Long rows: CUB sort, then grid-wide kernels.

constexpr int kThreads = 256;
constexpr int64_t kTile = 4096;  // elements per block in the sums: a fixed order, whatever the GPU

// Grid-stride loops over the steps of dominance_long.h.
#define AOT_GRID_LOOP(e, count) \
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < (count); e += gridDim.x * int64_t(blockDim.x))

template <typename T>
__global__ void keys_kernel(k::LongRows<T> L) {
  const int64_t segments = 2 * L.a.rows + 1;
  AOT_GRID_LOOP(e, L.total() > segments ? L.total() : segments) {
    if (e < L.total()) k::long_key(L, e);
    if (e < segments) k::long_offset(L, e);
  }
}

template <typename T>
__global__ void gather_kernel(k::LongRows<T> L) {
  AOT_GRID_LOOP(e, L.total()) k::long_gather(L, e);
}

template <typename T>
__global__ void unsort_kernel(k::LongRows<T> L, const uint32_t* positions, const T* grads) {
  AOT_GRID_LOOP(e, L.total()) k::long_unsort(L, e, positions, grads);
}

template <typename T>
__global__ void levels_kernel(k::LongRows<T> L) {
  AOT_GRID_LOOP(e, L.total()) k::long_level(L, e);
}

template <typename T>
__global__ void counts_kernel(k::LongRows<T> L) {
  AOT_GRID_LOOP(e, L.total()) k::long_count(L, e);
}

template <typename T>
__global__ void grads_kernel(k::LongRows<T> L) {
  AOT_GRID_LOOP(e, L.total()) k::long_grad(L, e);
}

// Sum over one tile of a row into *out: per-thread strided sums, then a tree.
__device__ void tile_sum(double local, double* out) {
  __shared__ double sums[kThreads];
  sums[threadIdx.x] = local;
  __syncthreads();
  for (unsigned s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sums[threadIdx.x] += sums[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sums[0];
}

// The cost terms of one tile of kTile pairs or cells of row blockIdx.y. grid = (tiles, rows).
template <typename T, bool kPairs>
__global__ void __launch_bounds__(kThreads) terms_kernel(k::LongRows<T> L, double* partial) {
  const int64_t r = blockIdx.y, width = kPairs ? L.a.n : L.a.n + L.a.m;
  const int64_t begin = blockIdx.x * kTile, end = begin + kTile < width ? begin + kTile : width;
  double local = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    local += kPairs ? k::long_pair(L, r, i) : k::long_cell(L, r, i);
  }
  tile_sum(local, partial + r * gridDim.x + blockIdx.x);
}

// cost[r] = scale * (the sum of the row's tile sums, by one block's tree).
template <typename T>
__global__ void __launch_bounds__(kThreads) finish_kernel(const double* partial, int64_t tiles, double scale,
                                                          T* cost) {
  const int64_t r = blockIdx.x;
  double local = 0.0;
  for (int64_t t = threadIdx.x; t < tiles; t += kThreads) local += partial[r * tiles + t];
  __shared__ double total;
  tile_sum(local, &total);
  if (threadIdx.x == 0) cost[r] = static_cast<T>(total * scale);
}

// ---------------------------------------------------------------------------------------
// Workspace layout, shared by the sizing and the launch.

constexpr size_t kAlign = 256;
// Up to this many segments (U's and V's rows) each gets a device-wide radix sort: CUB's
// segmented sort gives a segment one thread block, far too little for rows of millions.
constexpr int64_t kSortLoopMax = 16;
// From this many values per sample (with few segments), the gradients are un-sorted
// (step 7) rather than scattered directly: a scatter over more than the L2 cache (50 MB on
// an H100) pays a read-modify-write of a DRAM sector per element (docs/performance.md,
// "Native op (CUDA)", has the figures).
constexpr int64_t kUnsortMin = int64_t(1) << 21;

struct Carver {  // hands out aligned pieces of one allocation (or only counts, when base is null)
  char* base;
  size_t used = 0;
  template <typename U>
  U* take(int64_t count) {
    used = (used + kAlign - 1) / kAlign * kAlign;
    U* out = base != nullptr ? reinterpret_cast<U*>(base + used) : nullptr;
    used += static_cast<size_t>(count) * sizeof(U);
    return out;
  }
};

bool uses_blocks(int64_t n, int64_t m) { return n <= k::kBlockMaxRow && m <= k::kBlockMaxRow; }

bool merged(int64_t n, int64_t m, bool weighted) { return weighted || n != m; }

bool unsorts(int64_t rows, int64_t n, int64_t m) { return 2 * rows <= kSortLoopMax && (n > m ? n : m) >= kUnsortMin; }

struct BitRange {
  int begin, end;
};

// The top 8 bits of positions 0 .. size - 1: one radix pass (step 7).
BitRange unsort_bits(int64_t size) {
  int bits = 1;
  while ((int64_t(1) << bits) < size) ++bits;
  return {bits > 8 ? bits - 8 : 0, bits};
}

int64_t grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return blocks < 65535 * 8 ? (blocks > 0 ? blocks : 1) : 65535 * 8;
}

template <typename T>
struct LongBuffers {
  k::key_t<T>* keys[2];
  uint32_t* index[2];
  int64_t* offsets;
  T* sorted;
  double* levels;
  double* scratch;  // sorted weights, then (after the scan) the cells
  double* scanned;
  uint32_t* counts;
  T* grad_sorted;
  double* partial;
  void* cub;
  size_t cub_bytes;
};

template <typename T>
size_t cub_bytes(int64_t rows, int64_t n, int64_t m, bool weighted) {
  const int64_t total = rows * (n + m);
  size_t sort_bytes = 0, scan_bytes = 0;
  constexpr int kBits = 8 * sizeof(k::key_t<T>);
  const k::key_t<T>* kin = nullptr;
  k::key_t<T>* kout = nullptr;
  const uint32_t* iin = nullptr;
  uint32_t* iout = nullptr;
  const int64_t* offsets = nullptr;
  if (2 * rows <= kSortLoopMax) {
    cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, kin, kout, iin, iout, n > m ? n : m, 0, kBits);
    if (unsorts(rows, n, m)) {  // keys: positions; values: the gradients
      size_t unsort_bytes = 0;
      const T* gin = nullptr;
      T* gout = nullptr;
      const BitRange bits = unsort_bits(n > m ? n : m);
      cub::DeviceRadixSort::SortPairs(nullptr, unsort_bytes, iin, iout, gin, gout, n > m ? n : m, bits.begin,
                                      bits.end);
      sort_bytes = sort_bytes > unsort_bytes ? sort_bytes : unsort_bytes;
    }
  } else {
    cub::DeviceSegmentedRadixSort::SortPairs(nullptr, sort_bytes, kin, kout, iin, iout, total,
                                             static_cast<int64_t>(2 * rows), offsets, offsets + 1, 0, kBits);
  }
  if (weighted) {
    const double* in = nullptr;
    double* out = nullptr;
    const int64_t longest = n > m ? n : m;
    cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, in, out, longest);
  }
  return sort_bytes > scan_bytes ? sort_bytes : scan_bytes;
}

template <typename T>
LongBuffers<T> carve_long(Carver& c, int64_t rows, int64_t n, int64_t m, bool weighted) {
  const int64_t total = rows * (n + m);
  const int64_t tiles = (n + m + kTile - 1) / kTile;
  LongBuffers<T> b{};
  for (int s = 0; s < 2; ++s) {
    b.keys[s] = c.take<k::key_t<T>>(total);
    b.index[s] = c.take<uint32_t>(total);
  }
  b.offsets = c.take<int64_t>(2 * rows + 1);
  const bool grid = merged(n, m, weighted);
  // sorted values for the merged grid (pairs decode the keys), scratch of the un-sort
  b.sorted = grid || unsorts(rows, n, m) ? c.take<T>(total) : nullptr;
  b.levels = weighted ? c.take<double>(total) : nullptr;
  b.scratch = grid ? c.take<double>(total) : nullptr;
  b.scanned = weighted ? c.take<double>(total) : nullptr;
  b.counts = grid ? c.take<uint32_t>(total) : nullptr;
  b.grad_sorted = unsorts(rows, n, m) ? c.take<T>(total) : nullptr;
  b.partial = c.take<double>(rows * tiles);
  b.cub_bytes = cub_bytes<T>(rows, n, m, weighted);
  b.cub = c.take<char>(static_cast<int64_t>(b.cub_bytes));
  return b;
}

template <typename T>
size_t workspace_bytes(int64_t rows, int64_t n, int64_t m, bool weighted) {
  Carver c{nullptr};
  if (uses_blocks(n, m)) {
    if (merged(n, m, weighted)) {
      c.take<double>(rows * (n + m));  // levels
      c.take<uint32_t>(rows * (n + m));
      c.take<double>(rows * (n + m));  // cells
    }
  } else {
    carve_long<T>(c, rows, n, m, weighted);
  }
  return c.used;
}

template <typename T>
cudaError_t launch_blocks(const k::DominanceArgs<T>& a, Carver& c, cudaStream_t stream) {
  const bool grid = merged(a.n, a.m, a.wu != nullptr || a.wv != nullptr);
  double* levels = grid ? c.take<double>(a.rows * (a.n + a.m)) : nullptr;
  uint32_t* counts = grid ? c.take<uint32_t>(a.rows * (a.n + a.m)) : nullptr;
  double* cells = grid ? c.take<double>(a.rows * (a.n + a.m)) : nullptr;
  const BlockPlan plan = block_plan<T>(a.n, a.m);
  if (plan.shared_bytes > 48 * 1024) {  // above the default limit, opt in (up to 227 KB on sm_90)
    const cudaError_t err = cudaFuncSetAttribute(block_rows_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(plan.shared_bytes));
    if (err != cudaSuccess) return err;
  }
  block_rows_kernel<T><<<static_cast<unsigned>(a.rows), plan.threads, plan.shared_bytes, stream>>>(
      a, plan.p, levels, counts, cells);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_long(const k::DominanceArgs<T>& a, Carver& c, cudaStream_t stream) {
  const int64_t rows = a.rows, n = a.n, m = a.m, total = rows * (n + m);
  const bool weighted = a.wu != nullptr || a.wv != nullptr, grid = merged(n, m, weighted);
  LongBuffers<T> b = carve_long<T>(c, rows, n, m, weighted);
  k::LongRows<T> L{a,        b.keys[0], b.index[0], b.offsets, b.keys[1], b.index[1], b.sorted, b.scratch,
                   b.scanned, b.levels,  b.counts,   b.scratch, a.grad_u != nullptr ? b.grad_sorted : nullptr};
  const unsigned blocks = static_cast<unsigned>(grid_for(total));
  keys_kernel<T><<<blocks, kThreads, 0, stream>>>(L);
  constexpr int kBits = 8 * sizeof(k::key_t<T>);
  cudaError_t err = cudaSuccess;
  if (2 * rows <= kSortLoopMax) {  // few long segments: a device-wide sort each
    for (int64_t seg = 0; seg < 2 * rows && err == cudaSuccess; ++seg) {
      const int64_t size = seg < rows ? n : m, start = seg < rows ? seg * n : rows * n + (seg - rows) * m;
      size_t cub_size = b.cub_bytes;
      err = cub::DeviceRadixSort::SortPairs(b.cub, cub_size, b.keys[0] + start, b.keys[1] + start,
                                            b.index[0] + start, b.index[1] + start, size, 0, kBits, stream);
    }
  } else {
    size_t cub_size = b.cub_bytes;
    err = cub::DeviceSegmentedRadixSort::SortPairs(b.cub, cub_size, b.keys[0], b.keys[1], b.index[0], b.index[1],
                                                   total, static_cast<int64_t>(2 * rows), b.offsets, b.offsets + 1,
                                                   0, kBits, stream);
  }
  if (err != cudaSuccess) return err;
  if (grid) gather_kernel<T><<<blocks, kThreads, 0, stream>>>(L);
  if (weighted) {  // each weighted side's cumulative masses, row by row, then the levels
    for (int64_t s = 0; s < 2 * rows; ++s) {
      const bool u_side = s < rows;
      if ((u_side ? a.wu : a.wv) == nullptr) continue;
      const int64_t size = u_side ? n : m, start = u_side ? s * n : rows * n + (s - rows) * m;
      size_t scan_size = b.cub_bytes;
      err = cub::DeviceScan::InclusiveSum(b.cub, scan_size, b.scratch + start, b.scanned + start, size, stream);
      if (err != cudaSuccess) return err;
    }
    levels_kernel<T><<<blocks, kThreads, 0, stream>>>(L);
  }
  const int64_t tiles = ((grid ? n + m : n) + kTile - 1) / kTile;
  const dim3 tiled(static_cast<unsigned>(tiles), static_cast<unsigned>(rows));
  if (grid) {
    counts_kernel<T><<<blocks, kThreads, 0, stream>>>(L);
    terms_kernel<T, false><<<tiled, kThreads, 0, stream>>>(L, b.partial);
    if (a.grad_u != nullptr) grads_kernel<T><<<blocks, kThreads, 0, stream>>>(L);
  } else {
    terms_kernel<T, true><<<tiled, kThreads, 0, stream>>>(L, b.partial);
  }
  if (L.grad_sorted != nullptr) {  // the gradients back to input order (step 7)
    // (position, gradient) pairs by the position's top bits, segment by segment, into the
    // first index buffer and the sorted values (both free by now), then the scatter
    for (int64_t seg = 0; seg < 2 * rows && err == cudaSuccess; ++seg) {
      const int64_t size = seg < rows ? n : m, start = seg < rows ? seg * n : rows * n + (seg - rows) * m;
      const BitRange bits = unsort_bits(size);
      size_t cub_size = b.cub_bytes;
      err = cub::DeviceRadixSort::SortPairs(b.cub, cub_size, b.index[1] + start, b.index[0] + start,
                                            b.grad_sorted + start, b.sorted + start, size, bits.begin, bits.end,
                                            stream);
    }
    if (err != cudaSuccess) return err;
    unsort_kernel<T><<<blocks, kThreads, 0, stream>>>(L, b.index[0], b.sorted);
  }
  const double scale = grid ? 1.0 : 1.0 / static_cast<double>(n);
  finish_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(b.partial, tiles, scale, a.cost);
  return cudaGetLastError();
}

template <typename T>
int launch(const k::DominanceArgs<T>& a, void* workspace, size_t workspace_bytes_given, void* stream) {
  if (!k::known_cost(a.params.cost)) return cudaErrorInvalidValue;
  if (a.rows == 0) return cudaSuccess;
  const bool weighted = a.wu != nullptr || a.wv != nullptr;
  if (workspace_bytes_given < workspace_bytes<T>(a.rows, a.n, a.m, weighted)) return cudaErrorInvalidValue;
  if (!uses_blocks(a.n, a.m) && a.rows > k::kMaxLongRows) return cudaErrorInvalidConfiguration;
  Carver c{static_cast<char*>(workspace)};
  auto s = static_cast<cudaStream_t>(stream);
  return uses_blocks(a.n, a.m) ? launch_blocks(a, c, s) : launch_long(a, c, s);
}

}  // namespace

size_t dominance_workspace_bytes(int64_t rows, int64_t n, int64_t m, bool weighted, bool is_double) {
  return is_double ? workspace_bytes<double>(rows, n, m, weighted) : workspace_bytes<float>(rows, n, m, weighted);
}

int dominance_launch(const kernels::DominanceArgs<float>& args, void* workspace, size_t bytes, void* stream) {
  return launch(args, workspace, bytes, stream);
}

int dominance_launch(const kernels::DominanceArgs<double>& args, void* workspace, size_t bytes, void* stream) {
  return launch(args, workspace, bytes, stream);
}

const char* error_string(int error) { return cudaGetErrorString(static_cast<cudaError_t>(error)); }

}  // namespace aot_loss::cuda
