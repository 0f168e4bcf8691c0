// CUDA binding of aot_loss::dominance (schema in aot_loss/ops/library.py): checks and unpacks
// tensors, allocates outputs and scratch through torch's caching allocator, and launches
// the torch-free kernels of cuda/dominance_cuda.cu on the current stream. LibTorch stable
// ABI only. Built only on request against a CUDA torch (AOT_LOSS_BUILD_CUDA=1, setup.py).
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "bindings/dominance_binding.h"
#include "cuda/dominance_cuda.h"

// Declared by shim.h only under USE_CUDA; exported by every CUDA build of torch.
extern "C" AOTITorchError aoti_torch_get_current_cuda_stream(int32_t device_index, void** ret_stream);

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;
namespace k = aot_loss::kernels;
namespace b = aot_loss::binding;

std::tuple<Tensor, Tensor, Tensor> dominance_cuda(Tensor u, Tensor v, std::optional<Tensor> u_weights,
                                                  std::optional<Tensor> v_weights, StringHandle cost_handle,
                                                  double beta, double label_smoothing, bool need_grad) {
  const std::string cost_name = b::take_string(cost_handle);
  const int32_t device = u.get_device_index();
  const k::Cost cost_kind = b::check_dominance_args(
      u, v, u_weights, v_weights, cost_name, "CUDA", "be on the CUDA device of u",
      [device](const Tensor& t) { return t.is_cuda() && t.get_device_index() == device; });
  const torch::stable::accelerator::DeviceGuard guard(device);
  const int32_t cuda = aoti_torch_device_type_cuda();
  auto [cost, grad_u, grad_v] = b::dominance_outputs(u, v, need_grad, cuda, device);
  const bool is_double = u.scalar_type() == ScalarType::Double;
  const int64_t n = u.size(u.dim() - 1), m = v.size(v.dim() - 1);
  const size_t bytes =
      aot_loss::cuda::dominance_workspace_bytes(u.numel() / n, n, m, u_weights || v_weights, is_double);
  Tensor workspace = b::empty_on({static_cast<int64_t>(bytes)}, aoti_torch_dtype_uint8(), cuda, device);
  void* stream = nullptr;
  STD_TORCH_CHECK(aoti_torch_get_current_cuda_stream(device, &stream) == AOTI_TORCH_SUCCESS,
                  "aot_loss::dominance: no current CUDA stream");
  const k::CostParams params{cost_kind, beta, label_smoothing};
  void* scratch = bytes > 0 ? workspace.mutable_data_ptr() : nullptr;
  const int error = b::with_kernel_float(u, [&](auto zero) {
    using T = decltype(zero);
    return aot_loss::cuda::dominance_launch(
        b::dominance_args<T>(u, v, u_weights, v_weights, params, cost, need_grad, grad_u, grad_v), scratch, bytes,
        stream);
  });
  STD_TORCH_CHECK(error == 0, "aot_loss::dominance: CUDA launch failed: ", aot_loss::cuda::error_string(error));
  return {cost, grad_u, grad_v};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(aot_loss, CUDA, m) {
  m.impl("dominance", TORCH_BOX(&dominance_cuda));
}
