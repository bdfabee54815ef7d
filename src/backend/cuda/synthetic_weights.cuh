// Synthetic weights made on the device: the same counter-based values as make_model's
// synthetic_tensor_values (see SyntheticTensorParams in model/make_model.h), so a synthetic
// model on the GPU equals a checkpoint written by `mixserve make-model` with the same seed.
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

// splitmix64's finalizer, as in make_model.cpp.
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// out: [n]; grid-stride, one element per thread per step.
template <typename T>
__global__ void fill_synthetic_kernel(T* out, int64_t n, uint64_t key, double half_width,
                                      bool norm) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t r = mix64(key + static_cast<uint64_t>(i + 1) * 0x9e3779b97f4a7c15ull);
    const int64_t k = static_cast<int64_t>(r >> 40);
    const double x = static_cast<double>(2 * k - (int64_t{1} << 24)) * 0x1p-24;
    const double scaled = __dmul_rn(x, half_width);  // no contraction into an FMA
    const double v = norm ? __dadd_rn(1.0, scaled) : scaled;
    out[i] = from_float<T>(static_cast<float>(v));
  }
}

template <typename T>
cudaError_t launch_fill_synthetic(T* out, int64_t n, uint64_t key, double half_width, bool norm,
                                  cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  fill_synthetic_kernel<T>
      <<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), threads, 0, stream>>>(
          out, n, key, half_width, norm);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
