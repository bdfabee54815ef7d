// Generic paged causal attention (prefill, chunked prefill and decode are one kernel), any
// D <= 256, GQA, sliding window, online softmax in float32. The fallback of paged_attention for
// head dims other than 64 / 128 (attention_decode.cuh and attention_prefill.cuh take those),
// and the baseline the fast kernels are tested and benchmarked against.
//
// Work split: one block per (query token t, KV head g), one warp per query head of the group
// (G = Hq / Hkv warps). The block walks t's visible positions in tiles of 32: all its threads
// stage the tile's K and V rows of head g in shared memory once (shared by the G query
// heads), then in each warp lane j scores key j of the tile against the warp's query, the
// warp updates its running max / sum, and lane d accumulates output dimensions d, d+32, ...
// Queries of one sequence re-read the same K/V (no query tiling), and a decode step has only
// T x Hkv blocks (no split of the context).
#pragma once

#include <type_traits>

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kv_layout.h"

namespace mixserve::cuda {

constexpr int kAttnTile = 32;  // keys per shared-memory tile (one per lane)
constexpr int kAttnMaxD = 256;
constexpr int kAttnDPerLane = kAttnMaxD / 32;
constexpr int kAttnLoadUnroll = 4;

__host__ __device__ inline int attn_row_stride(int D) { return D % 8 == 0 ? D + 8 : D + 2; }

// Element offset of position pos of KV head g in a pool (kv_layout.h), through the block table.
__device__ __forceinline__ int64_t kv_offset(const int32_t* table, int pos, int block_size, int Hkv,
                                             int g, int D) {
  const int64_t slot =
      static_cast<int64_t>(table[pos / block_size]) * block_size + pos % block_size;
  return kv_row(slot, g, Hkv) * D;
}

// Shared memory: q_s [G, D] float, k_s / v_s [kAttnTile, attn_row_stride(D)] C.
// T: the query/output type; C: the cache's (T, or E4M3 for an FP8 cache, converted to float
// in registers; its K scale is folded into a.scale, its V scale applied to the output).
// kWide: G > 16 warps, so the register budget must allow a 1024-thread block (64 registers,
// measured ~30% slower); G <= 16 keeps the 512-thread budget.
template <typename T, typename C, bool kWide>
__global__ void __launch_bounds__(kWide ? 1024 : 512) paged_attention_kernel(AttentionArgs a) {
  // 8 cache elements per vector load: 16 bytes of bf16/fp16, 8 bytes of E4M3.
  using Chunk = typename std::conditional<sizeof(C) == 2, uint4, uint2>::type;
  const int t = blockIdx.x, g = blockIdx.y;
  const int D = a.head_dim, G = a.num_heads / a.num_kv_heads, Hkv = a.num_kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // D % 8 == 0: 16-byte loads and rows padded by 8 elements (16-byte aligned; lane j's
  // 16-byte reads of row j spread over all banks); else scalar, rows padded by 2.
  const bool vec = D % 8 == 0;
  const int ld = attn_row_stride(D);
  extern __shared__ __align__(16) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem);
  C* k_s = reinterpret_cast<C*>(q_s + G * D);
  C* v_s = k_s + kAttnTile * ld;

  const T* q = static_cast<const T*>(a.q) + t * a.q_stride + static_cast<int64_t>(g) * G * D;
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) q_s[i] = to_float(q[i]);

  const C* k_cache = static_cast<const C*>(a.k_cache);
  const C* v_cache = static_cast<const C*>(a.v_cache);
  const int32_t* table =
      a.block_tables + static_cast<int64_t>(a.seq_of_token[t]) * a.max_blocks_per_seq;
  const int p = a.positions[t];
  const int first = a.sliding_window > 0 ? max(0, p - a.sliding_window + 1) : 0;

  float m = -INFINITY, l = 0.0f;
  float acc[kAttnDPerLane];
#pragma unroll
  for (int i = 0; i < kAttnDPerLane; ++i) acc[i] = 0.0f;

  for (int base = first; base <= p; base += kAttnTile) {
    const int n = min(kAttnTile, p - base + 1);
    __syncthreads();  // the previous tile is consumed (and q_s is written, first time)
    if (vec) {
      // 16-byte chunks, kAttnLoadUnroll K and V chunks in flight per thread before any store:
      // the tile costs about one memory round trip instead of one per element.
      const int cpr = D / 8, total = n * cpr;
      for (int c0 = threadIdx.x; c0 < total; c0 += blockDim.x * kAttnLoadUnroll) {
        Chunk kr[kAttnLoadUnroll], vr[kAttnLoadUnroll];
#pragma unroll
        for (int u = 0; u < kAttnLoadUnroll; ++u) {
          const int c = c0 + u * blockDim.x;
          if (c < total) {
            const int64_t src =
                kv_offset(table, base + c / cpr, a.block_size, Hkv, g, D) + (c % cpr) * 8;
            kr[u] = *reinterpret_cast<const Chunk*>(k_cache + src);
            vr[u] = *reinterpret_cast<const Chunk*>(v_cache + src);
          }
        }
#pragma unroll
        for (int u = 0; u < kAttnLoadUnroll; ++u) {
          const int c = c0 + u * blockDim.x;
          if (c < total) {
            const int dst = (c / cpr) * ld + (c % cpr) * 8;
            *reinterpret_cast<Chunk*>(k_s + dst) = kr[u];
            *reinterpret_cast<Chunk*>(v_s + dst) = vr[u];
          }
        }
      }
    } else {
      for (int i = threadIdx.x; i < n * D; i += blockDim.x) {
        const int j = i / D, d = i % D;
        const int64_t src = kv_offset(table, base + j, a.block_size, Hkv, g, D) + d;
        k_s[j * ld + d] = k_cache[src];
        v_s[j * ld + d] = v_cache[src];
      }
    }
    __syncthreads();
    if (warp < G) {
      const float* qw = q_s + warp * D;
      float score = -INFINITY;
      if (lane < n) {
        const C* kr = k_s + lane * ld;
        float dot = 0.0f;
        if (vec) {
          for (int d = 0; d < D; d += 8) {
            const Chunk raw = *reinterpret_cast<const Chunk*>(kr + d);
            const C* e = reinterpret_cast<const C*>(&raw);
#pragma unroll
            for (int u = 0; u < 8; ++u) dot += qw[d + u] * to_float(e[u]);
          }
        } else {
          for (int d = 0; d < D; ++d) dot += qw[d] * to_float(kr[d]);
        }
        score = dot * a.scale;
      }
      const float m_new = fmaxf(m, warp_max(score));
      const float pj = lane < n ? expf(score - m_new) : 0.0f;
      const float correction = expf(m - m_new);  // 0 on the first tile (m = -inf)
      l = l * correction + warp_sum(pj);
#pragma unroll
      for (int i = 0; i < kAttnDPerLane; ++i) acc[i] *= correction;
      for (int j = 0; j < n; ++j) {
        const float pjj = __shfl_sync(0xffffffffu, pj, j);
        const C* vr = v_s + j * ld;
#pragma unroll
        for (int i = 0; i < kAttnDPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < D) acc[i] += pjj * to_float(vr[d]);
        }
      }
      m = m_new;
    }
  }
  if (warp < G) {
    T* out = static_cast<T*>(a.out) + (static_cast<int64_t>(t) * a.num_heads + g * G + warp) * D;
    const float inv_l = 1.0f / l;
#pragma unroll
    for (int i = 0; i < kAttnDPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < D) out[d] = from_float<T>(acc[i] * inv_l * a.v_scale);
    }
  }
}

template <typename T, typename C>
cudaError_t launch_paged_attention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.num_tokens <= 0) return cudaSuccess;
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0) return cudaErrorInvalidValue;
  const int G = a.num_heads / a.num_kv_heads;
  if (G > 32 || a.head_dim <= 0 || a.head_dim > kAttnMaxD) return cudaErrorInvalidValue;
  const size_t smem =
      sizeof(float) * G * a.head_dim + 2 * sizeof(C) * kAttnTile * attn_row_stride(a.head_dim);
  auto* kernel = G > 16 ? paged_attention_kernel<T, C, true> : paged_attention_kernel<T, C, false>;
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(a.num_tokens, a.num_kv_heads);
  kernel<<<grid, 32 * G, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
