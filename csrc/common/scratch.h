// Scratch memory of the CPU kernels: uninitialised arrays that live for one call.
//
// A long row's scratch is fresh memory on every call (the system allocator maps blocks of
// this size anew and returns them on free), so its first touch faults once per page. With 4 KiB
// pages that can cost more than the sort that touched it (one call on 1e6 float32 values
// touches 48 MiB). Blocks of 2 MiB or more are therefore aligned to 2 MiB and, on Linux,
// advised as transparent huge pages, which fault once per 2 MiB (docs/performance.md has the
// figures). The advice is only a hint: with huge pages disabled the kernel ignores it, and
// nothing is kept between calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace aot_loss::kernels {

constexpr size_t kHugePage = size_t(2) << 20;

// Uninitialised memory for `bytes` bytes (std::vector would first zero it, which costs as
// much as a radix pass on rows of millions).
inline void* allocate_scratch(size_t bytes) {
#if defined(__linux__)
  if (bytes >= kHugePage) {
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* p = nullptr;
    if (posix_memalign(&p, kHugePage, rounded) != 0) throw std::bad_alloc();
    madvise(p, rounded, MADV_HUGEPAGE);  // a hint: failure (THP off, old kernel) changes nothing
    return p;
  }
#endif
  void* p = std::malloc(bytes > 0 ? bytes : 1);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

struct FreeScratch {
  void operator()(void* p) const { std::free(p); }
};

// An array of uninitialised values of a trivial type T, grown on demand (contents dropped).
template <typename T>
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(int64_t n) { reserve(n); }

  // At least n values; the contents are not kept when it grows.
  T* reserve(int64_t n) {
    if (n > capacity_) {
      memory_.reset();  // the old block goes first, so growing never holds both
      memory_.reset(static_cast<T*>(allocate_scratch(static_cast<size_t>(n) * sizeof(T))));
      capacity_ = n;
    }
    return memory_.get();
  }
  T* data() { return memory_.get(); }
  T& operator[](int64_t i) { return memory_.get()[i]; }

 private:
  std::unique_ptr<T, FreeScratch> memory_;
  int64_t capacity_ = 0;
};

}  // namespace aot_loss::kernels
