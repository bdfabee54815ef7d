// Rotary embedding fused with the write of K and V into the paged cache.
//
// Convention (transformers' rotate_half, as the CPU reference): for i < D/2,
//   angle = float(position) * inv_freq[i],  x'[i] = x[i] cos - x[i+D/2] sin,
//   x'[i+D/2] = x[i+D/2] cos + x[i] sin, in float32 (precise cosf/sinf, no fast math).
// Cache layout of one layer: K and V pools [N, Hkv, D], slot = block * block_size + offset.
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

// One block per token.  qkv: [T, (Hq + 2 Hkv) D]; caches: [N, Hkv, D]
template <typename T>
__global__ void rope_write_kv_kernel(T* qkv, int Hq, int Hkv, int D, const int32_t* positions,
                                     const int64_t* slots, const float* inv_freq, T* k_cache,
                                     T* v_cache) {
  const int t = blockIdx.x;
  const int half = D / 2;
  T* row = qkv + static_cast<int64_t>(t) * (Hq + 2 * Hkv) * D;
  const float pos = static_cast<float>(positions[t]);
  const int64_t slot = slots[t];  // < 0: a padding token of a CUDA-graph bucket, no KV write
  T* k_dst = k_cache + (slot < 0 ? 0 : slot) * Hkv * D;
  // Rotation pairs of the Hq query heads, then of the Hkv key heads.
  for (int p = threadIdx.x; p < (Hq + Hkv) * half; p += blockDim.x) {
    const int head = p / half, i = p % half;
    const float angle = pos * inv_freq[i];
    const float c = cosf(angle), s = sinf(angle);
    T* x = row + head * D;
    const float lo = to_float(x[i]), hi = to_float(x[i + half]);
    const T new_lo = from_float<T>(lo * c - hi * s);
    const T new_hi = from_float<T>(hi * c + lo * s);
    if (head < Hq) {
      x[i] = new_lo;
      x[i + half] = new_hi;
    } else if (slot >= 0) {
      T* k = k_dst + (head - Hq) * D;
      k[i] = new_lo;
      k[i + half] = new_hi;
    }
  }
  const T* v = row + (Hq + Hkv) * D;
  T* v_dst = v_cache + slot * Hkv * D;
  if (slot < 0) return;
  for (int i = threadIdx.x; i < Hkv * D; i += blockDim.x) v_dst[i] = v[i];
}

template <typename T>
cudaError_t launch_rope_write_kv(T* qkv, int T_, int Hq, int Hkv, int D, const int32_t* positions,
                                 const int64_t* slots, const float* inv_freq, T* k_cache,
                                 T* v_cache, cudaStream_t stream) {
  if (T_ <= 0) return cudaSuccess;
  if (D % 2 != 0) return cudaErrorInvalidValue;
  rope_write_kv_kernel<T>
      <<<T_, 128, 0, stream>>>(qkv, Hq, Hkv, D, positions, slots, inv_freq, k_cache, v_cache);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
