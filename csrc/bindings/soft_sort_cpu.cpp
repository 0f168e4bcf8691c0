// CPU binding of aot_loss::soft_sort and aot_loss::soft_sort_backward (schemas in
// aot_loss/ops/library.py): checks and unpacks tensors and runs the torch-free kernels in
// cpu/soft_sort.h. LibTorch stable ABI only.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/binding_utils.h"
#include "common/limits.h"
#include "cpu/soft_sort.h"

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;
namespace k = aot_loss::kernels;
using aot_loss::binding::as_contiguous;
using aot_loss::binding::dtype_code;
using aot_loss::binding::empty_cpu;
using aot_loss::binding::is_kernel_float;
using aot_loss::binding::with_kernel_float;
using aot_loss::binding::shape_of;
using aot_loss::binding::StableParallelFor;
using aot_loss::binding::take_string;

int64_t last_size(const Tensor& t) { return t.dim() == 0 ? 1 : t.size(t.dim() - 1); }

template <typename T>
void forward(const Tensor& x, double delta, bool kl, Tensor& values, Tensor& state) {
  const int64_t n = last_size(x);
  const k::SoftSortArgs<T> args{
      static_cast<const T*>(x.const_data_ptr()), x.numel() / n, n, delta, kl,
      static_cast<T*>(values.mutable_data_ptr()), static_cast<int64_t*>(state.mutable_data_ptr()),
  };
  k::soft_sort_forward<T>(args, StableParallelFor{});
}

void check_regularization(const std::string& regularization, const char* op) {
  STD_TORCH_CHECK(regularization == "l2" || regularization == "kl", op,
                  ": regularization must be 'l2' or 'kl', got '", regularization, "'");
}

std::tuple<Tensor, Tensor> soft_sort_cpu(Tensor x, double strength, StringHandle regularization_handle) {
  const std::string regularization = take_string(regularization_handle);
  STD_TORCH_CHECK(x.is_cpu() && is_kernel_float(x), "aot_loss::soft_sort: the CPU kernel serves float32 and float64 CPU tensors");
  check_regularization(regularization, "aot_loss::soft_sort");
  STD_TORCH_CHECK(strength > 0 && std::isfinite(strength), "aot_loss::soft_sort: strength must be finite and > 0");
  STD_TORCH_CHECK(last_size(x) < aot_loss::kernels::kMaxRow,
                  "aot_loss::soft_sort: rows longer than 2^32 - 1 elements");
  x = as_contiguous(x);
  const auto shape = shape_of(x);
  Tensor values = empty_cpu(shape, dtype_code(x));
  Tensor state = empty_cpu(shape, aoti_torch_dtype_int64());
  if (x.numel() > 0) {
    const bool kl = regularization == "kl";
    with_kernel_float(x, [&](auto zero) { forward<decltype(zero)>(x, 1.0 / strength, kl, values, state); });
  }
  return {values, state};
}

// The state is the forward's, but anyone can call the op with any int64 tensor, and the
// kernel indexes with it: per row, the low 32 bits must be a permutation of 0..n-1 and the
// high bits the first sorted index of each block (non-decreasing, each block starting at its
// own index). Returns the first offending flat index, or -1.
int64_t invalid_state(const int64_t* state, int64_t rows, int64_t n) {
  std::vector<uint8_t> seen(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(seen.begin(), seen.end(), uint8_t{0});
    const int64_t* s = state + r * n;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t perm = static_cast<uint64_t>(s[i]) & 0xFFFFFFFFu;
      const int64_t first = s[i] >> 32;
      const bool block_ok = i == 0 ? first == 0 : (first == i || first == s[i - 1] >> 32);
      if (s[i] < 0 || perm >= static_cast<uint64_t>(n) || seen[perm] || !block_ok) return r * n + i;
      seen[perm] = 1;
    }
  }
  return -1;
}

template <typename T>
void backward(const Tensor& grad, const Tensor& x, const Tensor& state, bool kl, Tensor& grad_x) {
  const int64_t n = last_size(grad);
  k::soft_sort_backward<T>(static_cast<const T*>(grad.const_data_ptr()), static_cast<const T*>(x.const_data_ptr()),
                           static_cast<const int64_t*>(state.const_data_ptr()), kl, grad.numel() / n, n,
                           static_cast<T*>(grad_x.mutable_data_ptr()), StableParallelFor{});
}

Tensor soft_sort_backward_cpu(Tensor grad, Tensor x, Tensor state, StringHandle regularization_handle) {
  const std::string regularization = take_string(regularization_handle);
  STD_TORCH_CHECK(grad.is_cpu() && is_kernel_float(grad) && x.scalar_type() == grad.scalar_type(),
                  "aot_loss::soft_sort_backward: the CPU kernel serves float32 and float64 CPU tensors");
  STD_TORCH_CHECK(state.scalar_type() == ScalarType::Long, "aot_loss::soft_sort_backward: state must be int64");
  check_regularization(regularization, "aot_loss::soft_sort_backward");
  const auto shape = shape_of(grad);
  STD_TORCH_CHECK(shape_of(x) == shape && shape_of(state) == shape,
                  "aot_loss::soft_sort_backward: grad, x and state must have one shape");
  grad = as_contiguous(grad);
  x = as_contiguous(x);
  state = as_contiguous(state);
  Tensor grad_x = empty_cpu(shape, dtype_code(grad));
  if (grad.numel() > 0) {
    const int64_t n = last_size(grad);
    const int64_t bad = invalid_state(static_cast<const int64_t*>(state.const_data_ptr()), grad.numel() / n, n);
    STD_TORCH_CHECK(bad < 0, "aot_loss::soft_sort_backward: state is not the state of soft_sort's forward (element ",
                    bad, " of its flattened rows); pass the state that aot_loss::soft_sort returned");
    with_kernel_float(grad, [&](auto zero) { backward<decltype(zero)>(grad, x, state, regularization == "kl", grad_x); });
  }
  return grad_x;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(aot_loss, CPU, m) {
  m.impl("soft_sort", TORCH_BOX(&soft_sort_cpu));
  m.impl("soft_sort_backward", TORCH_BOX(&soft_sort_backward_cpu));
}
