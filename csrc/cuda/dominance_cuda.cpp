// CUDA binding of aot_loss::dominance (schema in aot_loss/_library.py): checks and unpacks
// tensors, allocates outputs and scratch through torch's caching allocator, and launches
// the torch-free kernels of kernels/dominance_cuda.cu on the current stream. LibTorch stable
// ABI only. Built only on request against a CUDA torch (AOT_LOSS_BUILD_CUDA=1, setup.py).
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "binding_utils.h"
#include "kernels/dominance_cuda.h"

// Declared by shim.h only under USE_CUDA; exported by every CUDA build of torch.
extern "C" AOTITorchError aoti_torch_get_current_cuda_stream(int32_t device_index, void** ret_stream);

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;
namespace k = aot_loss::kernels;
using aot_loss::binding::as_contiguous;
using aot_loss::binding::dtype_code;
using aot_loss::binding::empty_on;
using aot_loss::binding::shape_of;

void check_operand(const Tensor& t, const Tensor& u, const char* name) {
  STD_TORCH_CHECK(t.is_cuda() && t.get_device_index() == u.get_device_index(), "aot_loss::dominance: ", name,
                  " must be on the CUDA device of u");
  STD_TORCH_CHECK(t.scalar_type() == u.scalar_type(), "aot_loss::dominance: ", name, " must have the dtype of u");
  STD_TORCH_CHECK(t.dim() == u.dim() && t.dim() >= 1, "aot_loss::dominance: ", name,
                  " must have the number of dimensions of u (>= 1)");
}

template <typename T>
k::DominanceArgs<T> args_of(const Tensor& u, const Tensor& v, const std::optional<Tensor>& wu,
                            const std::optional<Tensor>& wv, k::CostParams params, Tensor& cost, bool need_grad,
                            Tensor& grad_u, Tensor& grad_v) {
  const int64_t n = u.size(u.dim() - 1), m = v.size(v.dim() - 1);
  return {static_cast<const T*>(u.const_data_ptr()),
          static_cast<const T*>(v.const_data_ptr()),
          wu ? static_cast<const T*>(wu->const_data_ptr()) : nullptr,
          wv ? static_cast<const T*>(wv->const_data_ptr()) : nullptr,
          u.numel() / n,
          n,
          m,
          params,
          static_cast<T*>(cost.mutable_data_ptr()),
          need_grad ? static_cast<T*>(grad_u.mutable_data_ptr()) : nullptr,
          need_grad ? static_cast<T*>(grad_v.mutable_data_ptr()) : nullptr};
}

std::tuple<Tensor, Tensor, Tensor> dominance_cuda(Tensor u, Tensor v, std::optional<Tensor> u_weights,
                                                  std::optional<Tensor> v_weights, std::string cost_name,
                                                  double beta, double label_smoothing, bool need_grad) {
  const k::Cost cost_kind = k::parse_cost(cost_name);
  STD_TORCH_CHECK(cost_kind != k::Cost::kUnknown, "aot_loss::dominance: unknown cost '", cost_name, "'");
  STD_TORCH_CHECK(u.scalar_type() == ScalarType::Float || u.scalar_type() == ScalarType::Double,
                  "aot_loss::dominance: the CUDA kernel serves float32 and float64 only");
  check_operand(u, u, "u");
  check_operand(v, u, "v");
  const int64_t n = u.size(u.dim() - 1), m = v.size(v.dim() - 1);
  STD_TORCH_CHECK(n >= 1 && m >= 1, "aot_loss::dominance: empty sample");
  STD_TORCH_CHECK(std::max(n, m) < std::numeric_limits<uint32_t>::max(),
                  "aot_loss::dominance: rows longer than 2^32 - 1 elements");
  u = as_contiguous(u);
  v = as_contiguous(v);
  if (u_weights) {
    check_operand(*u_weights, u, "u_weights");
    u_weights = as_contiguous(*u_weights);
  }
  if (v_weights) {
    check_operand(*v_weights, u, "v_weights");
    v_weights = as_contiguous(*v_weights);
  }
  const int32_t device = u.get_device_index();
  const torch::stable::accelerator::DeviceGuard guard(device);
  const int32_t cuda = aoti_torch_device_type_cuda();
  std::vector<int64_t> row_shape = shape_of(u);
  row_shape.pop_back();
  const int32_t dtype = dtype_code(u);
  Tensor cost = empty_on(row_shape, dtype, cuda, device);
  Tensor grad_u = empty_on(need_grad ? shape_of(u) : std::vector<int64_t>{0}, dtype, cuda, device);
  Tensor grad_v = empty_on(need_grad ? shape_of(v) : std::vector<int64_t>{0}, dtype, cuda, device);
  const bool is_double = u.scalar_type() == ScalarType::Double;
  const int64_t rows = u.numel() / n;
  const size_t bytes = aot_loss::cuda::dominance_workspace_bytes(rows, n, m, u_weights || v_weights, is_double);
  Tensor workspace = empty_on({static_cast<int64_t>(bytes)}, aoti_torch_dtype_uint8(), cuda, device);
  void* stream = nullptr;
  STD_TORCH_CHECK(aoti_torch_get_current_cuda_stream(device, &stream) == AOTI_TORCH_SUCCESS,
                  "aot_loss::dominance: no current CUDA stream");
  const k::CostParams params{cost_kind, beta, label_smoothing};
  void* scratch = bytes > 0 ? workspace.mutable_data_ptr() : nullptr;
  const int error =
      is_double
          ? aot_loss::cuda::dominance_launch(
                args_of<double>(u, v, u_weights, v_weights, params, cost, need_grad, grad_u, grad_v), scratch,
                bytes, stream)
          : aot_loss::cuda::dominance_launch(
                args_of<float>(u, v, u_weights, v_weights, params, cost, need_grad, grad_u, grad_v), scratch,
                bytes, stream);
  STD_TORCH_CHECK(error == 0, "aot_loss::dominance: CUDA launch failed: ", aot_loss::cuda::error_string(error));
  return {cost, grad_u, grad_v};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(aot_loss, CUDA, m) {
  m.impl("dominance", TORCH_BOX(&dominance_cuda));
}
