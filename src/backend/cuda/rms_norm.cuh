// Fused residual add + RMSNorm (MixtralRMSNorm), float32 math, half-precision output for the
// next GEMM. The residual stream stays float32 across layers.
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

constexpr int kNormThreads = 256;

// One block per output row.  x, delta: [T, H] float; rows: [R] or null; w: [H]; out: [R, H]
template <typename T>
__global__ void add_rms_norm_kernel(float* x, const float* delta, const int32_t* rows, int H,
                                    const T* w, float eps, T* out) {
  const int r = blockIdx.x;
  const int64_t src = rows ? rows[r] : r;
  float* xr = x + src * H;
  const float* dr = delta ? delta + src * H : nullptr;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    float v = xr[i];
    if (dr) {
      v += dr[i];
      if (!rows) xr[i] = v;  // the residual stream moves on only when every row is computed
    }
    sum_sq += v * v;
  }
  __shared__ float partial[kNormThreads / 32];
  sum_sq = warp_sum(sum_sq);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum_sq;
  __syncthreads();
  float total = 0.0f;
  for (int i = 0; i < kNormThreads / 32; ++i) total += partial[i];
  const float inv_rms = 1.0f / sqrtf(total / static_cast<float>(H) + eps);
  T* o = out + static_cast<int64_t>(r) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = dr ? xr[i] + (rows ? dr[i] : 0.0f) : xr[i];
    o[i] = from_float<T>(to_float(w[i]) * (v * inv_rms));
  }
}

template <typename T>
cudaError_t launch_add_rms_norm(float* x, const float* delta, const int32_t* rows, int R, int H,
                                const T* w, float eps, T* out, cudaStream_t stream) {
  if (R <= 0) return cudaSuccess;
  add_rms_norm_kernel<T><<<R, kNormThreads, 0, stream>>>(x, delta, rows, H, w, eps, out);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
