// Launchers of the CUDA dominance kernels (dominance_cuda.cu). Torch-free and CUDA-header
// free, so that the torch binding compiles with the host compiler: streams are void*, and
// errors come back as CUDA error codes (0 is success) with error_string() to name them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dominance_args.h"

namespace aot_loss::cuda {

// Device scratch, in bytes, of one launch for these sizes (0 is possible). `weighted`:
// either sample has weights. May call into CUB to size its temporary storage.
size_t dominance_workspace_bytes(int64_t rows, int64_t n, int64_t m, bool weighted, bool is_double);

// Computes args.cost (and args.grad_u / grad_v when not null) on `stream`. Every pointer of
// args is device memory; `workspace` holds dominance_workspace_bytes(...) bytes.
int dominance_launch(const kernels::DominanceArgs<float>& args, void* workspace, size_t workspace_bytes,
                     void* stream);
int dominance_launch(const kernels::DominanceArgs<double>& args, void* workspace, size_t workspace_bytes,
                     void* stream);

const char* error_string(int error);

}  // namespace aot_loss::cuda
