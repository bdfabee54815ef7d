// Owning device (cudaMalloc) and pinned host (cudaMallocHost) allocations.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "backend/cuda/cuda_check.h"

namespace mixserve::cuda {

template <bool kPinnedHost>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes) { reset(bytes); }
  ~Buffer() { release(); }
  Buffer(Buffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Frees, then allocates `bytes` (nothing for 0). Throws mixserve::Error on failure.
  void reset(size_t bytes) {
    release();
    if (bytes == 0) return;
    if constexpr (kPinnedHost) {
      MIXSERVE_CUDA_CHECK(cudaMallocHost(&ptr_, bytes));
    } else {
      MIXSERVE_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
    }
    bytes_ = bytes;
  }
  void release() {
    if (!ptr_) return;
    if constexpr (kPinnedHost) {
      cudaFreeHost(ptr_);
    } else {
      cudaFree(ptr_);
    }
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return ptr_; }
  template <typename T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + byte_offset);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = Buffer<false>;
using PinnedBuffer = Buffer<true>;

}  // namespace mixserve::cuda
