// Helpers shared by the CPU and CUDA bindings: the LibTorch stable ABI only, so one build serves
// every torch >= 2.10.
#pragma once

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdint>
#include <string>
#include <vector>

namespace aot_loss::binding {

// at::parallel_for through the stable ABI, in the form the torch-free kernels take.
struct StableParallelFor {
  template <typename F>
  void operator()(int64_t begin, int64_t end, int64_t grain, const F& f) const {
    torch::stable::parallel_for(begin, end, grain, f);
  }
};

inline std::vector<int64_t> shape_of(const torch::stable::Tensor& t) {
  const auto sizes = t.sizes();
  return std::vector<int64_t>(sizes.begin(), sizes.end());
}

// A `str` argument of an op, taken from its handle. TORCH_BOX unboxes a std::string parameter
// with torch's ToImpl<std::string>, which copies a heap-allocated std::string and never frees it
// (pytorch/pytorch#191340): 32-48 bytes lost on every call. A kernel takes the StringHandle
// instead and calls this first: it copies the characters and deletes the handle, which the
// callee owns.
inline std::string take_string(StringHandle handle) {
  size_t length = 0;
  const char* data = nullptr;
  const bool read = torch_string_length(handle, &length) == AOTI_TORCH_SUCCESS &&
                    torch_string_c_str(handle, &data) == AOTI_TORCH_SUCCESS;
  std::string out = read ? std::string(data, length) : std::string();
  const bool deleted = torch_delete_string(handle) == AOTI_TORCH_SUCCESS;
  STD_TORCH_CHECK(read && deleted, "aot_loss: could not read a str argument");
  return out;
}

// "(2, 5)": a shape for an error message.
inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t d = 0; d < shape.size(); ++d) out += (d ? ", " : "") + std::to_string(shape[d]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

// Skips the dispatcher round trip of contiguous() in the common, already-contiguous case.
inline torch::stable::Tensor as_contiguous(const torch::stable::Tensor& t) {
  return t.is_contiguous() ? t : torch::stable::contiguous(t);
}

// A contiguous tensor straight from the C shim: torch::stable::new_empty goes through a
// by-name dispatcher call that costs ~2 us, most of a small op's time. `dtype` is an AOTI
// dtype code (aoti_torch_dtype_*()), `device_type` an AOTI device type code.
inline torch::stable::Tensor empty_on(const std::vector<int64_t>& shape, int32_t dtype, int32_t device_type,
                                      int32_t device_index) {
  std::vector<int64_t> strides(shape.size());
  int64_t stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= shape[d];
  }
  AtenTensorHandle handle = nullptr;
  STD_TORCH_CHECK(aoti_torch_empty_strided(static_cast<int64_t>(shape.size()), shape.data(), strides.data(), dtype,
                                           device_type, device_index, &handle) == AOTI_TORCH_SUCCESS,
                  "aot_loss: allocation failed");
  return torch::stable::Tensor(handle);
}

inline torch::stable::Tensor empty_cpu(const std::vector<int64_t>& shape, int32_t dtype) {
  return empty_on(shape, dtype, aoti_torch_device_type_cpu(), 0);
}

// The floating types the kernels are instantiated for (the names are exported by facts.cpp),
// and the one switch from a tensor's dtype to one of them: returns f(T{}) with T float or
// double. The caller has checked is_kernel_float.
inline bool is_kernel_float(const torch::stable::Tensor& t) {
  using torch::headeronly::ScalarType;
  return t.scalar_type() == ScalarType::Float || t.scalar_type() == ScalarType::Double;
}
constexpr const char* kKernelFloatNames = "\"float32\", \"float64\"";

template <typename F>
auto with_kernel_float(const torch::stable::Tensor& t, const F& f) {
  return t.scalar_type() == torch::headeronly::ScalarType::Float ? f(float{}) : f(double{});
}

// The AOTI dtype code of a tensor, for empty_cpu.
inline int32_t dtype_code(const torch::stable::Tensor& t) {
  int32_t dtype = 0;
  STD_TORCH_CHECK(aoti_torch_get_dtype(t.get(), &dtype) == AOTI_TORCH_SUCCESS, "aot_loss: unknown dtype");
  return dtype;
}

}  // namespace aot_loss::binding
