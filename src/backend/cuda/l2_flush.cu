#include "backend/cuda/l2_flush.h"

namespace mixserve::cuda {
namespace {

__global__ void read_through_kernel(const uint4* buf, size_t n, uint32_t* sink) {
  uint32_t x = 0;
  for (size_t i = size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    const uint4 v = buf[i];
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x5eed5eedu) *sink = x;
}

}  // namespace

cudaError_t read_through(const void* buf, size_t bytes, uint32_t* sink, cudaStream_t stream) {
  if (bytes < 16) return cudaSuccess;
  if (reinterpret_cast<uintptr_t>(buf) % 16 != 0 || bytes % 16 != 0) return cudaErrorInvalidValue;
  read_through_kernel<<<132 * 8, 256, 0, stream>>>(static_cast<const uint4*>(buf), bytes / 16,
                                                   sink);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
