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

// One block per token.  qkv: [T, (Hq + 2 Hkv) D]; caches: [N, Hkv, D] of C (T, or E4M3
// storing k * k_inv and v * v_inv; both inverses are 1 for a half-precision cache).
template <typename T, typename C>
__global__ void rope_write_kv_kernel(T* qkv, int Hq, int Hkv, int D, const int32_t* positions,
                                     const int64_t* slots, const float* inv_freq, C* k_cache,
                                     C* v_cache, float k_inv, float v_inv) {
  const int t = blockIdx.x;
  const int half = D / 2;
  T* row = qkv + static_cast<int64_t>(t) * (Hq + 2 * Hkv) * D;
  const float pos = static_cast<float>(positions[t]);
  const int64_t slot = slots[t];  // < 0: a padding token of a CUDA-graph bucket, no KV write
  C* k_dst = k_cache + (slot < 0 ? 0 : slot) * Hkv * D;
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
      C* k = k_dst + (head - Hq) * D;
      // The half-precision-rounded value, as the bf16/fp16 cache stores it.
      k[i] = from_float<C>(to_float(new_lo) * k_inv);
      k[i + half] = from_float<C>(to_float(new_hi) * k_inv);
    }
  }
  if (slot < 0) return;
  const T* v = row + (Hq + Hkv) * D;
  C* v_dst = v_cache + slot * Hkv * D;
  for (int i = threadIdx.x; i < Hkv * D; i += blockDim.x) {
    v_dst[i] = from_float<C>(to_float(v[i]) * v_inv);
  }
}

template <typename T, typename C>
cudaError_t launch_rope_write_kv(T* qkv, int T_, int Hq, int Hkv, int D, const int32_t* positions,
                                 const int64_t* slots, const float* inv_freq, C* k_cache,
                                 C* v_cache, float k_inv, float v_inv, cudaStream_t stream) {
  if (T_ <= 0) return cudaSuccess;
  if (D % 2 != 0) return cudaErrorInvalidValue;
  rope_write_kv_kernel<T, C><<<T_, 128, 0, stream>>>(qkv, Hq, Hkv, D, positions, slots, inv_freq,
                                                     k_cache, v_cache, k_inv, v_inv);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
