// The size limits of the kernels, declared once. The bindings check them; the library
// exports them (bindings/facts.cpp), and aot_loss/ops/dispatch.py reads them from there to
// send the calls the kernels cannot serve to the torch path.
#pragma once

#include <cstdint>
#include <limits>

namespace aot_loss::kernels {

// Rows are sorted with 32-bit permutations: at most 2^32 - 2 values per row and sample.
constexpr int64_t kMaxRow = std::numeric_limits<uint32_t>::max();
// CUDA: rows of up to kBlockMaxRow values per sample run one thread block each (the block
// sorts up to 2 * kBlockMaxRow items); longer rows run grid-wide kernels that put rows on
// the grid's y dimension, at most kMaxLongRows of them.
constexpr int64_t kBlockMaxRow = 4096;
constexpr int64_t kMaxLongRows = 65535;

}  // namespace aot_loss::kernels
