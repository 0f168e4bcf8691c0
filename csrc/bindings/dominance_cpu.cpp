// CPU binding of aot_loss::dominance (schema in aot_loss/ops/library.py): unpacks tensors and runs
// the torch-free kernel in cpu/dominance.h. LibTorch stable ABI only, so one build
// serves every torch >= 2.10.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <optional>
#include <string>
#include <tuple>

#include "bindings/dominance_binding.h"
#include "cpu/dominance.h"

namespace {

using torch::stable::Tensor;
namespace k = aot_loss::kernels;
namespace b = aot_loss::binding;

std::tuple<Tensor, Tensor, Tensor> dominance_cpu(Tensor u, Tensor v, std::optional<Tensor> u_weights,
                                                 std::optional<Tensor> v_weights, StringHandle cost_handle,
                                                 double beta, double label_smoothing, bool need_grad) {
  const std::string cost_name = b::take_string(cost_handle);
  const k::Cost cost_kind = b::check_dominance_args(u, v, u_weights, v_weights, cost_name, "CPU",
                                                    "be a CPU tensor", [](const Tensor& t) { return t.is_cpu(); });
  auto [cost, grad_u, grad_v] = b::dominance_outputs(u, v, need_grad, aoti_torch_device_type_cpu(), 0);
  const k::CostParams params{cost_kind, beta, label_smoothing};
  b::with_kernel_float(u, [&](auto zero) {
    using T = decltype(zero);
    k::dominance_forward<T>(b::dominance_args<T>(u, v, u_weights, v_weights, params, cost, need_grad, grad_u, grad_v),
                            b::StableParallelFor{});
  });
  return {cost, grad_u, grad_v};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(aot_loss, CPU, m) {
  m.impl("dominance", TORCH_BOX(&dominance_cpu));
}
