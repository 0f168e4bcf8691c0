// The un-sort of the long path (csrc/cuda/dominance_cuda.cu, step 7) at n = 1e7 values per
// sample, two samples, float32, on data laid out as after its one radix pass on the positions'
// top 8 bits: buckets in order, each a random permutation of its 2^shift positions. Times the
// scatter as the op does it (A) against alternatives, and checks that each writes the same
// result. An experiment kept for reproduction (docs/performance.md, the 1e7 goal); nothing
// here is part of the library. Clusters need sm_90:
//   nvcc -O3 -std=c++17 -arch=sm_90 -Icsrc benchmarks/unsort_scatter.cu -o /tmp/unsort && /tmp/unsort
// or `benchmarks/gpu_run.sh unsort`. Each time: best of 10 runs after 2, L2 flushed before each.
#include <cstdint>
#include <cstdio>
#include <vector>
#include <random>
#include <algorithm>
#include <cuda_runtime.h>
#include <cooperative_groups.h>
#include <cub/cub.cuh>

#include "common/device.h"  // the op's quot_rem
namespace cg = cooperative_groups;
using aot_loss::kernels::quot_rem;

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s line %d\n", cudaGetErrorString(e), __LINE__); return 1; } } while (0)

// A: as today: one grid over both samples, sample-order position from the row's start
__global__ void scatter_a(int64_t n, int64_t total, const uint32_t* pos, const float* g, float* gu, float* gv) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += gridDim.x * int64_t(blockDim.x)) {
    const bool is_u = e < n;
    const int64_t local = is_u ? quot_rem(e, n).rem : quot_rem(e - n, n).rem;
    const int64_t p = e - local + pos[e];
    if (is_u) gu[p] = g[e]; else gv[p - n] = g[e];
  }
}
// B: one segment per launch, 32-bit
__global__ void scatter_b(uint32_t size, const uint32_t* __restrict__ pos, const float* __restrict__ g, float* __restrict__ out) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < size; i += gridDim.x * blockDim.x) out[pos[i]] = g[i];
}
// C: four per thread, vector loads (size a multiple of 4 here)
__global__ void scatter_c(uint32_t size4, const uint4* __restrict__ pos, const float4* __restrict__ g, float* __restrict__ out) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < size4; i += gridDim.x * blockDim.x) {
    const uint4 p = pos[i]; const float4 v = g[i];
    out[p.x] = v.x; out[p.y] = v.y; out[p.z] = v.z; out[p.w] = v.w;
  }
}
// E: B with streaming loads (evict-first) so the targets keep L2
__global__ void scatter_e(uint32_t size, const uint32_t* __restrict__ pos, const float* __restrict__ g, float* __restrict__ out) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < size; i += gridDim.x * blockDim.x) out[__ldcs(pos + i)] = __ldcs(g + i);
}
// F: two blocks per bucket, each reads the whole bucket and keeps its half in shared memory
__global__ void scatter_f(uint32_t n, int shift, const uint32_t* __restrict__ pos, const float* __restrict__ g, float* __restrict__ out) {
  extern __shared__ float buf[];
  const uint32_t half = 1u << (shift - 1), bucket = blockIdx.x / 2, part = blockIdx.x % 2;
  const uint32_t base = bucket << shift, size = min(1u << shift, n - base), lo = base + part * half;
  for (uint32_t i = threadIdx.x; i < size; i += blockDim.x) {
    const uint32_t p = pos[base + i] - lo;
    if (p < half) buf[p] = g[base + i];
  }
  __syncthreads();
  for (uint32_t i = threadIdx.x; i < half && lo + i < min(n, base + size); i += blockDim.x) out[lo + i] = buf[i];
}
// G: a cluster of two blocks per bucket, each reads half the pairs and writes into the owner's shared memory
__global__ void __cluster_dims__(2, 1, 1) scatter_g(uint32_t n, int shift, const uint32_t* __restrict__ pos, const float* __restrict__ g, float* __restrict__ out) {
  extern __shared__ float buf[];
  cg::cluster_group cl = cg::this_cluster();
  const uint32_t rank = cl.block_rank();
  const uint32_t half = 1u << (shift - 1), bucket = blockIdx.x / 2;
  const uint32_t base = bucket << shift, size = min(1u << shift, n - base);
  float* dst[2] = {cl.map_shared_rank(buf, 0), cl.map_shared_rank(buf, 1)};
  cl.sync();
  const uint32_t end = min((rank + 1) * half, size);
  for (uint32_t i = rank * half + threadIdx.x; i < end; i += blockDim.x) {
    const uint32_t p = pos[base + i] - base;
    dst[p >= half][p & (half - 1)] = g[base + i];
  }
  cl.sync();
  const uint32_t lo = base + rank * half;
  for (uint32_t i = threadIdx.x; i < half && lo + i < base + size; i += blockDim.x) out[lo + i] = buf[i];
}
// H: the partition by the positions' top 8 bits without a sort: bucket sizes are known (the
// positions are a permutation), so slots come from per-bucket cursors, order within a bucket free
constexpr int kTileH = 4096;
__global__ void partition_h(uint32_t n, int shift, const uint32_t* __restrict__ pos, const float* __restrict__ g, uint32_t* cursor, uint32_t* __restrict__ opos, float* __restrict__ og) {
  __shared__ uint32_t hist[256], slot[256];
  for (int t = threadIdx.x; t < 256; t += blockDim.x) hist[t] = 0;
  __syncthreads();
  constexpr int per = kTileH / 256;
  uint32_t p[per], r[per]; float v[per];
  const uint32_t start = blockIdx.x * kTileH;
  #pragma unroll
  for (int k = 0; k < per; ++k) {
    const uint32_t i = start + k * 256 + threadIdx.x;
    if (i < n) { p[k] = pos[i]; v[k] = g[i]; r[k] = atomicAdd(&hist[p[k] >> shift], 1u); }
  }
  __syncthreads();
  for (int t = threadIdx.x; t < 256; t += blockDim.x) slot[t] = hist[t] ? atomicAdd(&cursor[t], hist[t]) + (uint32_t(t) << shift) : 0;
  __syncthreads();
  #pragma unroll
  for (int k = 0; k < per; ++k) {
    const uint32_t i = start + k * 256 + threadIdx.x;
    if (i < n) { const uint32_t s = slot[p[k] >> shift] + r[k]; opos[s] = p[k]; og[s] = v[k]; }
  }
}

int main() {
  const int64_t n = 10000000;
  int bits = 1; while ((int64_t(1) << bits) < n) ++bits;
  const int shift = bits - 8;
  std::mt19937 rng(0);
  std::vector<uint32_t> part(n), plain(n);
  for (int64_t i = 0; i < n; ++i) plain[i] = uint32_t(i);
  std::shuffle(plain.begin(), plain.end(), rng);
  part = plain;
  std::stable_sort(part.begin(), part.end(), [&](uint32_t a, uint32_t b) { return (a >> shift) < (b >> shift); });
  uint32_t *pos, *posr; float *g, *gu, *gv;
  CK(cudaMalloc(&pos, 2 * n * 4)); CK(cudaMalloc(&posr, 2 * n * 4)); CK(cudaMalloc(&g, 2 * n * 4));
  CK(cudaMalloc(&gu, n * 4)); CK(cudaMalloc(&gv, n * 4));
  CK(cudaMemcpy(pos, part.data(), n * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(pos + n, part.data(), n * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(posr, plain.data(), n * 4, cudaMemcpyHostToDevice)); CK(cudaMemcpy(posr + n, plain.data(), n * 4, cudaMemcpyHostToDevice));
  CK(cudaMemset(g, 0, 2 * n * 4));
  float* flush; CK(cudaMalloc(&flush, 256 << 20));
  cudaEvent_t t0, t1; cudaEventCreate(&t0); cudaEventCreate(&t1);
  const int threads = 256;
  auto blocks = [&](int64_t c) { int64_t b = (c + threads - 1) / threads; return unsigned(b < 65535 * 8 ? b : 65535 * 8); };
  auto time = [&](const char* name, auto launch) {
    float best = 1e9;
    for (int rep = 0; rep < 12; ++rep) {
      cudaMemset(flush, rep, 256 << 20);  // evict L2
      cudaEventRecord(t0); launch(); cudaEventRecord(t1); cudaEventSynchronize(t1);
      float ms; cudaEventElapsedTime(&ms, t0, t1); if (rep >= 2) best = std::min(best, ms);
    }
    printf("%-44s %8.1f us\n", name, best * 1e3);
  };
  time("A today (one grid, 64-bit, quot_rem)", [&] { scatter_a<<<blocks(2 * n), threads>>>(n, 2 * n, pos, g, gu, gv); });
  time("B per segment, 32-bit", [&] { scatter_b<<<blocks(n), threads>>>(n, pos, g, gu); scatter_b<<<blocks(n), threads>>>(n, pos + n, g + n, gv); });
  time("B per segment, 32-bit, 132*8 blocks", [&] { scatter_b<<<132 * 8, threads>>>(n, pos, g, gu); scatter_b<<<132 * 8, threads>>>(n, pos + n, g + n, gv); });
  time("C per segment, 4 per thread", [&] { scatter_c<<<blocks(n / 4), threads>>>(n / 4, (uint4*)pos, (float4*)g, gu); scatter_c<<<blocks(n / 4), threads>>>(n / 4, (uint4*)(pos + n), (float4*)(g + n), gv); });
  time("E per segment, streaming loads", [&] { scatter_e<<<blocks(n), threads>>>(n, pos, g, gu); scatter_e<<<blocks(n), threads>>>(n, pos + n, g + n, gv); });
  time("D plain scatter, no partition (B on a random order)", [&] { scatter_b<<<blocks(n), threads>>>(n, posr, g, gu); scatter_b<<<blocks(n), threads>>>(n, posr + n, g + n, gv); });
  time("copy 2 x 1e7 floats (reference)", [&] { cudaMemcpyAsync(gu, g, n * 4, cudaMemcpyDeviceToDevice); cudaMemcpyAsync(gv, g + n, n * 4, cudaMemcpyDeviceToDevice); });

  const uint32_t buckets = uint32_t((n + (int64_t(1) << shift) - 1) >> shift);
  const size_t half_bytes = (size_t(1) << (shift - 1)) * 4;
  CK(cudaFuncSetAttribute(scatter_f, cudaFuncAttributeMaxDynamicSharedMemorySize, int(half_bytes)));
  CK(cudaFuncSetAttribute(scatter_g, cudaFuncAttributeMaxDynamicSharedMemorySize, int(half_bytes)));
  time("F two blocks per bucket, shared memory", [&] { scatter_f<<<2 * buckets, 1024, half_bytes>>>(n, shift, pos, g, gu); scatter_f<<<2 * buckets, 1024, half_bytes>>>(n, shift, pos + n, g + n, gv); });
  time("G cluster of two per bucket (DSMEM)", [&] { scatter_g<<<2 * buckets, 1024, half_bytes>>>(n, shift, pos, g, gu); scatter_g<<<2 * buckets, 1024, half_bytes>>>(n, shift, pos + n, g + n, gv); });
  CK(cudaGetLastError());
  { // check F and G against the plain scatter
    std::vector<float> hv(n), a(n), b(n);
    for (int64_t i = 0; i < n; ++i) hv[i] = float(i % 1000003);
    CK(cudaMemcpy(g, hv.data(), n * 4, cudaMemcpyHostToDevice));
    scatter_b<<<blocks(n), threads>>>(n, pos, g, gu); CK(cudaMemcpy(a.data(), gu, n * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemset(gu, 0, n * 4)); scatter_f<<<2 * buckets, 1024, half_bytes>>>(n, shift, pos, g, gu); CK(cudaMemcpy(b.data(), gu, n * 4, cudaMemcpyDeviceToHost));
    printf("F equals B: %d\n", int(a == b));
    CK(cudaMemset(gu, 0, n * 4)); scatter_g<<<2 * buckets, 1024, half_bytes>>>(n, shift, pos, g, gu); CK(cudaMemcpy(b.data(), gu, n * 4, cudaMemcpyDeviceToHost));
    printf("G equals B: %d\n", int(a == b));
  }
  { // H against CUB's one pass on the top bits, from sorted order (a random permutation)
    uint32_t *cursor, *opos; float* og; CK(cudaMalloc(&cursor, 2 * 256 * 4)); CK(cudaMalloc(&opos, 2 * n * 4)); CK(cudaMalloc(&og, 2 * n * 4));
    const unsigned hb = unsigned((n + kTileH - 1) / kTileH);
    time("H partition by cursors (2 samples)", [&] { cudaMemsetAsync(cursor, 0, 2 * 256 * 4); partition_h<<<hb, 256>>>(n, shift, posr, g, cursor, opos, og); partition_h<<<hb, 256>>>(n, shift, posr + n, g + n, cursor + 256, opos + n, og + n); });
    size_t tb = 0; cub::DeviceRadixSort::SortPairs(nullptr, tb, posr, opos, g, og, int(n), shift, bits);
    void* tmp; CK(cudaMalloc(&tmp, tb));
    time("CUB one pass on the top bits (2 samples)", [&] { size_t t = tb; cub::DeviceRadixSort::SortPairs(tmp, t, posr, opos, g, og, int(n), shift, bits); t = tb; cub::DeviceRadixSort::SortPairs(tmp, t, posr + n, opos + n, g + n, og + n, int(n), shift, bits); });
    // H's output, scattered by G, must equal the plain scatter
    cudaMemset(cursor, 0, 2 * 256 * 4); partition_h<<<hb, 256>>>(n, shift, posr, g, cursor, opos, og);
    std::vector<float> a(n), b(n);
    scatter_b<<<blocks(n), threads>>>(n, posr, g, gu); CK(cudaMemcpy(a.data(), gu, n * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemset(gu, 0, n * 4)); scatter_g<<<2 * buckets, 1024, half_bytes>>>(n, shift, opos, og, gu); CK(cudaMemcpy(b.data(), gu, n * 4, cudaMemcpyDeviceToHost));
    printf("H then G equals the plain scatter: %d\n", int(a == b));
    time("H then G (2 samples)", [&] { cudaMemsetAsync(cursor, 0, 2 * 256 * 4); partition_h<<<hb, 256>>>(n, shift, posr, g, cursor, opos, og); partition_h<<<hb, 256>>>(n, shift, posr + n, g + n, cursor + 256, opos + n, og + n); scatter_g<<<2 * buckets, 1024, half_bytes>>>(n, shift, opos, og, gu); scatter_g<<<2 * buckets, 1024, half_bytes>>>(n, shift, opos + n, og + n, gv); });
  }
  CK(cudaDeviceSynchronize());
  return 0;
}
