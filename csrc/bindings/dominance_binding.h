// What the CPU and CUDA bindings of aot_loss::dominance share: the checks of the arguments,
// their contiguous layout, the outputs, and the kernel arguments over the tensors' data.
// LibTorch stable ABI only.
#pragma once

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

#include "bindings/binding_utils.h"
#include "common/dominance_args.h"
#include "common/limits.h"

namespace aot_loss::binding {

// Checks the op's arguments for the kernel of one device type (`kernel`: "CPU", "CUDA") and
// makes u, v and the weights contiguous; returns the cost. `on_device(t)` tells whether t is
// where the kernel runs, `where` ends the error "<name> must ..." when it is not.
template <typename OnDevice>
kernels::Cost check_dominance_args(torch::stable::Tensor& u, torch::stable::Tensor& v,
                                   std::optional<torch::stable::Tensor>& u_weights,
                                   std::optional<torch::stable::Tensor>& v_weights, const std::string& cost_name,
                                   const char* kernel, const char* where, const OnDevice& on_device) {
  const kernels::Cost cost = kernels::cost_id(cost_name);
  STD_TORCH_CHECK(cost != kernels::Cost::kUnknown, "aot_loss::dominance: unknown cost '", cost_name, "'");
  STD_TORCH_CHECK(is_kernel_float(u), "aot_loss::dominance: the ", kernel, " kernel serves float32 and float64 only");
  const auto check = [&](const torch::stable::Tensor& t, const char* name) {
    STD_TORCH_CHECK(on_device(t), "aot_loss::dominance: ", name, " must ", where);
    STD_TORCH_CHECK(t.scalar_type() == u.scalar_type(), "aot_loss::dominance: ", name,
                    " must have the dtype of u");
    STD_TORCH_CHECK(t.dim() == u.dim() && t.dim() >= 1, "aot_loss::dominance: ", name,
                    " must have the number of dimensions of u (>= 1)");
  };
  check(u, "u");
  check(v, "v");
  // The kernel reads rows * n values of u and of its weights, rows * m of v and of its
  // weights: every shape must agree before any of them is read.
  const std::vector<int64_t> u_shape = shape_of(u), v_shape = shape_of(v);
  STD_TORCH_CHECK(std::equal(u_shape.begin(), u_shape.end() - 1, v_shape.begin()),
                  "aot_loss::dominance: v must have the rows of u (all dims but the last), got u of shape ",
                  shape_string(u_shape), " and v of shape ", shape_string(v_shape));
  const int64_t n = u_shape.back(), m = v_shape.back();
  STD_TORCH_CHECK(n >= 1 && m >= 1, "aot_loss::dominance: empty sample");
  STD_TORCH_CHECK(std::max(n, m) < kernels::kMaxRow,
                  "aot_loss::dominance: rows longer than 2^32 - 1 elements");
  u = as_contiguous(u);
  v = as_contiguous(v);
  const auto check_weights = [&](std::optional<torch::stable::Tensor>& w, const std::vector<int64_t>& shape,
                                 const char* name, const char* of) {
    if (!w) return;
    check(*w, name);
    STD_TORCH_CHECK(shape_of(*w) == shape, "aot_loss::dominance: ", name, " must have the shape of ", of, " ",
                    shape_string(shape), ", got ", shape_string(shape_of(*w)));
    w = as_contiguous(*w);
  };
  check_weights(u_weights, u_shape, "u_weights", "u");
  check_weights(v_weights, v_shape, "v_weights", "v");
  return cost;
}

// (cost, grad_u, grad_v) on the given device: one cost per row, the gradients shaped like
// u and v when need_grad, else empty.
inline std::tuple<torch::stable::Tensor, torch::stable::Tensor, torch::stable::Tensor> dominance_outputs(
    const torch::stable::Tensor& u, const torch::stable::Tensor& v, bool need_grad, int32_t device_type,
    int32_t device_index) {
  std::vector<int64_t> row_shape = shape_of(u);
  row_shape.pop_back();
  const int32_t dtype = dtype_code(u);
  const std::vector<int64_t> empty{0};
  return {empty_on(row_shape, dtype, device_type, device_index),
          empty_on(need_grad ? shape_of(u) : empty, dtype, device_type, device_index),
          empty_on(need_grad ? shape_of(v) : empty, dtype, device_type, device_index)};
}

// The kernel's view of checked, contiguous tensors (the gradients only when need_grad).
template <typename T>
kernels::DominanceArgs<T> dominance_args(const torch::stable::Tensor& u, const torch::stable::Tensor& v,
                                         const std::optional<torch::stable::Tensor>& wu,
                                         const std::optional<torch::stable::Tensor>& wv, kernels::CostParams params,
                                         torch::stable::Tensor& cost, bool need_grad,
                                         torch::stable::Tensor& grad_u, torch::stable::Tensor& grad_v) {
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

}  // namespace aot_loss::binding
