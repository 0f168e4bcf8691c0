// CPU binding of aot_loss::dominance (schema in aot_loss/_library.py): unpacks tensors and runs
// the torch-free kernel in kernels/dominance.h. LibTorch stable ABI only, so one build
// serves every torch >= 2.10.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "binding_utils.h"
#include "kernels/dominance.h"

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;
namespace k = aot_loss::kernels;
using aot_loss::binding::as_contiguous;
using aot_loss::binding::dtype_code;
using aot_loss::binding::empty_cpu;
using aot_loss::binding::shape_of;
using aot_loss::binding::StableParallelFor;

void check_operand(const Tensor& t, const Tensor& u, const char* name) {
  STD_TORCH_CHECK(t.is_cpu(), "aot_loss::dominance: ", name, " must be a CPU tensor");
  STD_TORCH_CHECK(t.scalar_type() == u.scalar_type(), "aot_loss::dominance: ", name,
                  " must have the dtype of u");
  STD_TORCH_CHECK(t.dim() == u.dim() && t.dim() >= 1, "aot_loss::dominance: ", name,
                  " must have the number of dimensions of u (>= 1)");
}

template <typename T>
void run(const Tensor& u, const Tensor& v, const std::optional<Tensor>& wu,
         const std::optional<Tensor>& wv, k::CostParams params, Tensor& cost, Tensor* grad_u,
         Tensor* grad_v) {
  const int64_t n = u.size(u.dim() - 1), m = v.size(v.dim() - 1);
  k::DominanceArgs<T> args{
      static_cast<const T*>(u.const_data_ptr()),
      static_cast<const T*>(v.const_data_ptr()),
      wu ? static_cast<const T*>(wu->const_data_ptr()) : nullptr,
      wv ? static_cast<const T*>(wv->const_data_ptr()) : nullptr,
      n == 0 ? 0 : u.numel() / n,
      n,
      m,
      params,
      static_cast<T*>(cost.mutable_data_ptr()),
      grad_u ? static_cast<T*>(grad_u->mutable_data_ptr()) : nullptr,
      grad_v ? static_cast<T*>(grad_v->mutable_data_ptr()) : nullptr,
  };
  k::dominance_forward<T>(args, StableParallelFor{});
}

std::tuple<Tensor, Tensor, Tensor> dominance_cpu(Tensor u, Tensor v, std::optional<Tensor> u_weights,
                                                 std::optional<Tensor> v_weights, std::string cost_name,
                                                 double beta, double label_smoothing, bool need_grad) {
  const k::Cost cost_kind = k::parse_cost(cost_name);
  STD_TORCH_CHECK(cost_kind != k::Cost::kUnknown, "aot_loss::dominance: unknown cost '", cost_name, "'");
  STD_TORCH_CHECK(u.scalar_type() == ScalarType::Float || u.scalar_type() == ScalarType::Double,
                  "aot_loss::dominance: the CPU kernel serves float32 and float64 only");
  check_operand(u, u, "u");
  check_operand(v, u, "v");
  STD_TORCH_CHECK(u.size(u.dim() - 1) >= 1 && v.size(v.dim() - 1) >= 1, "aot_loss::dominance: empty sample");
  STD_TORCH_CHECK(std::max(u.size(u.dim() - 1), v.size(v.dim() - 1)) < std::numeric_limits<uint32_t>::max(),
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
  std::vector<int64_t> row_shape = shape_of(u);
  row_shape.pop_back();
  const int32_t dtype = dtype_code(u);
  Tensor cost = empty_cpu(row_shape, dtype);
  Tensor grad_u = empty_cpu(need_grad ? shape_of(u) : std::vector<int64_t>{0}, dtype);
  Tensor grad_v = empty_cpu(need_grad ? shape_of(v) : std::vector<int64_t>{0}, dtype);
  const k::CostParams params{cost_kind, beta, label_smoothing};
  Tensor* gu = need_grad ? &grad_u : nullptr;
  Tensor* gv = need_grad ? &grad_v : nullptr;
  if (u.scalar_type() == ScalarType::Float) {
    run<float>(u, v, u_weights, v_weights, params, cost, gu, gv);
  } else {
    run<double>(u, v, u_weights, v_weights, params, cost, gu, gv);
  }
  return {cost, grad_u, grad_v};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(aot_loss, CPU, m) {
  m.impl("dominance", TORCH_BOX(&dominance_cpu));
}
