// Rotary embedding fused with the write of K and V into the paged cache.
//
// Convention (transformers' rotate_half, as the CPU reference): for i < D/2,
//   angle = float(position) * inv_freq[i],  x'[i] = x[i] cos - x[i+D/2] sin,
//   x'[i+D/2] = x[i+D/2] cos + x[i] sin, in float32 (precise cosf/sinf, no fast math).
// Cache layout of one layer: K and V pools of slots (slot = block * block_size + offset) in
// head-major tiles of 16 slots (kv_layout.h): slot s, head g at row kv_row(s, g, Hkv).
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kv_layout.h"

namespace mixserve::cuda {

// One block per token.  qkv: [T, (Hq + 2 Hkv) D]; caches: pools of C (kv_layout.h; T, or E4M3
// storing k * k_inv and v * v_inv; both inverses are 1 for a half-precision cache).
// row_scale [T] / col_scale [(Hq + 2 Hkv) D] (both or neither): qkv holds an unscaled FP8 GEMM's
// sums, whose values are qkv[t, j] * row_scale[t] * col_scale[j] (applied in float32 before the
// rotation; the rotated q is written back scaled).
template <typename T, typename C>
__global__ void rope_write_kv_kernel(T* qkv, int Hq, int Hkv, int D, const int32_t* positions,
                                     const int64_t* slots, const float* inv_freq, C* k_cache,
                                     C* v_cache, float k_inv, float v_inv,
                                     const float* row_scale, const float* col_scale) {
  const int t = blockIdx.x;
  const int half = D / 2;
  T* row = qkv + static_cast<int64_t>(t) * (Hq + 2 * Hkv) * D;
  const float rs = col_scale != nullptr ? row_scale[t] : 1.0f;
  auto value = [&](int j) {  // element j of the row, scaled
    return col_scale != nullptr ? to_float(row[j]) * (rs * col_scale[j]) : to_float(row[j]);
  };
  const float pos = static_cast<float>(positions[t]);
  const int64_t slot = slots[t];  // < 0: a padding token of a CUDA-graph bucket, no KV write
  // Rotation pairs of the Hq query heads, then of the Hkv key heads.
  for (int p = threadIdx.x; p < (Hq + Hkv) * half; p += blockDim.x) {
    const int head = p / half, i = p % half;
    const float angle = pos * inv_freq[i];
    const float c = cosf(angle), s = sinf(angle);
    T* x = row + head * D;
    const float lo = value(head * D + i), hi = value(head * D + i + half);
    const T new_lo = from_float<T>(lo * c - hi * s);
    const T new_hi = from_float<T>(hi * c + lo * s);
    if (head < Hq) {
      x[i] = new_lo;
      x[i + half] = new_hi;
    } else if (slot >= 0) {
      C* k = k_cache + kv_row(slot, head - Hq, Hkv) * D;
      // The half-precision-rounded value, as the bf16/fp16 cache stores it.
      k[i] = from_float<C>(to_float(new_lo) * k_inv);
      k[i + half] = from_float<C>(to_float(new_hi) * k_inv);
    }
  }
  if (slot < 0) return;
  const T* v = row + (Hq + Hkv) * D;
  for (int i = threadIdx.x; i < Hkv * D; i += blockDim.x) {
    v_cache[kv_row(slot, i / D, Hkv) * D + i % D] = from_float<C>(value(int(v - row) + i) * v_inv);
  }
}

// 8 values of type C from 8 floats, as one 16-byte (half types) or 8-byte (E4M3) store.
template <typename C>
__device__ __forceinline__ void store8(C* dst, const float (&v)[8]) {
  if constexpr (sizeof(C) == 2) {
    uint4 raw;
    C* t = reinterpret_cast<C*>(&raw);
#pragma unroll
    for (int j = 0; j < 8; ++j) t[j] = from_float<C>(v[j]);
    *reinterpret_cast<uint4*>(dst) = raw;
  } else {
    uint2 raw;
    C* t = reinterpret_cast<C*>(&raw);
#pragma unroll
    for (int j = 0; j < 8; ++j) t[j] = from_float<C>(v[j]);
    *reinterpret_cast<uint2*>(dst) = raw;
  }
}

// The same with 16-byte accesses, for D % 16 == 0 and D <= 2 * kRopeMaxHalf. Work items of a
// token: (Hq + Hkv) * D/16 rotation items (8 lanes of a head's lower half and the 8 matching
// lanes of its upper half) and Hkv * D/8 V items (8 values). Each thread loads all its items
// (up to kRopeUnroll, 32 bytes each) first; the token's D/2 cos / sin pairs are computed once
// into shared memory (the first version computed them for every pair of every head: 40x the
// trig) while the loads are in flight. Same float math per element as above.
constexpr int kRopeThreads = 128, kRopeUnroll = 4, kRopeMaxHalf = 256;
template <typename T, typename C>
__global__ void __launch_bounds__(kRopeThreads)
    rope_write_kv_vec_kernel(T* __restrict__ qkv, int Hq, int Hkv, int D,
                             const int32_t* __restrict__ positions,
                             const int64_t* __restrict__ slots, const float* __restrict__ inv_freq,
                             C* __restrict__ k_cache, C* __restrict__ v_cache, float k_inv,
                             float v_inv, const float* __restrict__ row_scale,
                             const float* __restrict__ col_scale) {
  __shared__ __align__(16) float cs[kRopeMaxHalf], sn[kRopeMaxHalf];
  // 8 values from element o of the row (unscaled sums: times row_scale[t] * col_scale[o + j]).
  const float rs = col_scale != nullptr ? row_scale[blockIdx.x] : 1.0f;
  auto load8 = [&](const uint4& raw, int o, float (&f)[8]) {
    const T* e = reinterpret_cast<const T*>(&raw);
    if (col_scale != nullptr) {
      float c[8];
      *reinterpret_cast<float4*>(c) = *reinterpret_cast<const float4*>(col_scale + o);
      *reinterpret_cast<float4*>(c + 4) = *reinterpret_cast<const float4*>(col_scale + o + 4);
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = to_float(e[j]) * (rs * c[j]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = to_float(e[j]);
    }
  };
  const int t = blockIdx.x;
  const int half = D / 2, per_head = half / 8;
  T* row = qkv + static_cast<int64_t>(t) * (Hq + 2 * Hkv) * D;
  const int64_t slot = slots[t];  // < 0: a padding token of a CUDA-graph bucket, no KV write
  const int rot_items = (Hq + Hkv) * per_head;
  const int total = rot_items + (slot >= 0 ? Hkv * D / 8 : 0);
  const float pos = static_cast<float>(positions[t]);
  for (int base = 0; base < total; base += kRopeThreads * kRopeUnroll) {
    uint4 lo[kRopeUnroll], hi[kRopeUnroll];
    int off[kRopeUnroll];  // element offset in the row of the item's (lower) 8 values
#pragma unroll
    for (int u = 0; u < kRopeUnroll; ++u) {
      const int p = base + u * kRopeThreads + threadIdx.x;
      off[u] = -1;
      if (p < rot_items) {
        const int head = p / per_head, j = p - head * per_head;
        off[u] = head * D + 8 * j;
        lo[u] = *reinterpret_cast<const uint4*>(row + off[u]);
        hi[u] = *reinterpret_cast<const uint4*>(row + off[u] + half);
      } else if (p < total) {
        off[u] = (Hq + Hkv) * D + 8 * (p - rot_items);
        lo[u] = *reinterpret_cast<const uint4*>(row + off[u]);
      }
    }
    if (base == 0) {
      for (int i = threadIdx.x; i < half; i += kRopeThreads) {
        const float angle = pos * inv_freq[i];
        cs[i] = cosf(angle);
        sn[i] = sinf(angle);
      }
      __syncthreads();
    }
#pragma unroll
    for (int u = 0; u < kRopeUnroll; ++u) {
      if (off[u] < 0) continue;
      float l[8];
      load8(lo[u], off[u], l);
      if (off[u] >= (Hq + Hkv) * D) {  // V: converted (E4M3: scaled) into the cache
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = l[j] * v_inv;
        const int e = off[u] - (Hq + Hkv) * D, vh = e / D;
        store8(v_cache + kv_row(slot, vh, Hkv) * D + (e - vh * D), v);
        continue;
      }
      const int head = off[u] / D, i0 = off[u] - head * D;
      float h[8];
      load8(hi[u], off[u] + half, h);
      float c[8], s[8];
      *reinterpret_cast<float4*>(c) = *reinterpret_cast<const float4*>(cs + i0);
      *reinterpret_cast<float4*>(c + 4) = *reinterpret_cast<const float4*>(cs + i0 + 4);
      *reinterpret_cast<float4*>(s) = *reinterpret_cast<const float4*>(sn + i0);
      *reinterpret_cast<float4*>(s + 4) = *reinterpret_cast<const float4*>(sn + i0 + 4);
      uint4 nl, nh;
      T* nlt = reinterpret_cast<T*>(&nl);
      T* nht = reinterpret_cast<T*>(&nh);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float a = l[j], b = h[j];
        nlt[j] = from_float<T>(a * c[j] - b * s[j]);
        nht[j] = from_float<T>(b * c[j] + a * s[j]);
      }
      if (head < Hq) {
        *reinterpret_cast<uint4*>(row + off[u]) = nl;
        *reinterpret_cast<uint4*>(row + off[u] + half) = nh;
      } else if (slot >= 0) {
        // The half-precision-rounded value, as the bf16/fp16 cache stores it.
        float kl[8], kh[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          kl[j] = to_float(nlt[j]) * k_inv;
          kh[j] = to_float(nht[j]) * k_inv;
        }
        C* k = k_cache + kv_row(slot, head - Hq, Hkv) * D + i0;
        store8(k, kl);
        store8(k + half, kh);
      }
    }
  }
}

template <typename T, typename C>
cudaError_t launch_rope_write_kv(T* qkv, int T_, int Hq, int Hkv, int D, const int32_t* positions,
                                 const int64_t* slots, const float* inv_freq, C* k_cache,
                                 C* v_cache, float k_inv, float v_inv, cudaStream_t stream,
                                 const float* row_scale = nullptr,
                                 const float* col_scale = nullptr) {
  if (T_ <= 0) return cudaSuccess;
  if (D % 2 != 0 || (row_scale == nullptr) != (col_scale == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const auto aligned = [](const void* p, uintptr_t a) {
    return reinterpret_cast<uintptr_t>(p) % a == 0;
  };
  const uintptr_t cache_align = sizeof(C) == 2 ? 16 : 8;
  if (D % 16 == 0 && D / 2 <= kRopeMaxHalf && aligned(qkv, 16) && aligned(k_cache, cache_align) &&
      aligned(v_cache, cache_align) && aligned(col_scale, 16)) {
    rope_write_kv_vec_kernel<T, C><<<T_, kRopeThreads, 0, stream>>>(
        qkv, Hq, Hkv, D, positions, slots, inv_freq, k_cache, v_cache, k_inv, v_inv, row_scale,
        col_scale);
    return cudaGetLastError();
  }
  rope_write_kv_kernel<T, C><<<T_, 128, 0, stream>>>(qkv, Hq, Hkv, D, positions, slots, inv_freq,
                                                     k_cache, v_cache, k_inv, v_inv, row_scale,
                                                     col_scale);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
