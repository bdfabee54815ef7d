// Embedding gather into the float32 residual stream.
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

// One block per token.  ids: [T], embed: [V, H], x: [T, H] float
template <typename T>
__global__ void embedding_gather_kernel(const int32_t* ids, const T* embed, int H, float* x) {
  const int t = blockIdx.x;
  const T* row = embed + static_cast<int64_t>(ids[t]) * H;
  float* out = x + static_cast<int64_t>(t) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) out[i] = to_float(row[i]);
}

template <typename T>
cudaError_t launch_embedding_gather(const int32_t* ids, int T_, const T* embed, int H, float* x,
                                    cudaStream_t stream) {
  if (T_ <= 0) return cudaSuccess;
  embedding_gather_kernel<T><<<T_, 256, 0, stream>>>(ids, embed, H, x);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
