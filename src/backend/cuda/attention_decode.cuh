// Split-K paged attention over one query token at a time (flash-decoding), for D = 64 / 128.
// The planner (plan_decode_splits) uses it only for batch-1-like steps over short contexts and
// under MIXSERVE_DECODE_TILED=0; attention_decode_tiled.cuh takes every other decode size.
//
// Shapes: T query tokens, Hq / Hkv heads, G = Hq / Hkv query heads per KV head, D head dim,
// P = splits of the context (planned on the host, attention_plan.cpp).
//
// Work split: one block of 128 threads per (token t, KV head g, group of HG <= 8 query heads of
// g, split s). D/8 lanes hold one key row (one 8-element chunk each: 16 bytes of bf16/fp16, 8
// bytes of an E4M3 cache), so a block runs 128 / (D/8) independent "streams" over its keys; each
// stream loads kUnroll keys' K and V chunks before using any, scores them against the HG
// query heads of its registers (16-lane shuffle reduction of the dot), and keeps its own online
// softmax state (float32, exp2 with the scale folded into q). The streams are merged through
// shared memory at the end; with P > 1 the block writes its normalised partial output and its
// log-sum-exp, and attention_combine_kernel merges the P partials of each (t, head).
// An E4M3 cache (C = __nv_fp8_e4m3) is converted to float in registers: its K scale is folded
// into a.scale, its V scale multiplies the block's output (before the linear split merge).
//
// Tokens of sequences longer than AttentionArgs::prefill_min_q (when the tensor-core prefill
// kernel handles them, seq_offsets != nullptr) are skipped here.
#pragma once

#include <cfloat>
#include <type_traits>

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kv_layout.h"

namespace mixserve::cuda {

constexpr int kDecodeThreads = 128;
// Keys per stream loaded before any is used. 8 for E4M3 caches was tried (2026-11-25, H100):
// it spilled (128 registers + 248 B stack) and ran 14% slower at 1024 x 192 keys.
constexpr int kDecodeUnroll = 4;
constexpr int kDecodeMaxSplits = 128;
constexpr float kLog2e = 1.4426950408889634f;

// Position -> element offset of KV head g's row in a pool (kv_layout.h), through the block table.
__device__ __forceinline__ int64_t paged_row(const int32_t* table, int pos, int block_size, int Hkv,
                                             int g, int D) {
  const int blk = pos / block_size;
  const int64_t slot = static_cast<int64_t>(table[blk]) * block_size + (pos - blk * block_size);
  return kv_row(slot, g, Hkv) * D;
}

// True if token t belongs to a sequence whose queries the prefill kernel computes.
__device__ __forceinline__ bool token_in_prefill(const AttentionArgs& a, int seq) {
  if (a.seq_offsets == nullptr) return false;
  return a.seq_offsets[seq + 1] - a.seq_offsets[seq] >= a.prefill_min_q;
}

// Shared memory (merge): m_s, l_s [streams, HG]; acc_s [streams, HG, D] float.
// Partials (P > 1): part_o [T, Hq, P, D] float (normalised), part_lse [T, Hq, P] float (log2).
// Register cap: 4 resident blocks (16 warps) per SM for HG <= 4; the kernel is bound by
// latency, so warps matter more than the last registers (measured: 3 blocks at 167 registers).
template <typename T, typename C, int D, int HG>
__global__ void __launch_bounds__(kDecodeThreads, HG <= 4 ? 4 : 2)
    attention_decode_kernel(AttentionArgs a, int num_splits, int split_len, int heads_per_group,
                            float* part_o, float* part_lse) {
  // 8 cache elements per vector load: 16 bytes of bf16/fp16, 8 bytes of E4M3.
  using Chunk = typename std::conditional<sizeof(C) == 2, uint4, uint2>::type;
  constexpr int kLanes = D / 8;                      // lanes per key row
  constexpr int kStreams = kDecodeThreads / kLanes;  // 8 (D 128) or 16 (D 64)
  const int t = blockIdx.x, split = blockIdx.z;
  const int G = a.num_heads / a.num_kv_heads;
  const int groups = G / heads_per_group;
  const int g = blockIdx.y / groups, h0 = g * G + (blockIdx.y % groups) * heads_per_group;
  const int hg = heads_per_group;
  const int seq = a.seq_of_token[t];
  if (token_in_prefill(a, seq)) return;
  const int stream = threadIdx.x / kLanes, c = threadIdx.x % kLanes;
  // The key loop's bounds are block-uniform, so every lane reaches every shuffle.
  constexpr unsigned lane_mask = 0xffffffffu;

  const int p = a.positions[t];
  const int first = a.sliding_window > 0 ? max(0, p - a.sliding_window + 1) : 0;
  const int lo = first + split * split_len, hi = min(p + 1, lo + split_len);

  // The HG query heads' 8 dims of chunk c, scaled so that exp2(q.k) = exp(scale q.k).
  float q[HG][8];
  const T* qrow = static_cast<const T*>(a.q) + t * a.q_stride + static_cast<int64_t>(h0) * D;
#pragma unroll
  for (int h = 0; h < HG; ++h) {
    uint4 raw = make_uint4(0, 0, 0, 0);
    if (h < hg) raw = *reinterpret_cast<const uint4*>(qrow + h * D + c * 8);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int u = 0; u < 8; ++u) q[h][u] = to_float(e[u]) * a.scale * kLog2e;
  }
  float m[HG], l[HG], acc[HG][8];
#pragma unroll
  for (int h = 0; h < HG; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int u = 0; u < 8; ++u) acc[h][u] = 0.0f;
  }

  const C* k_cache = static_cast<const C*>(a.k_cache);
  const C* v_cache = static_cast<const C*>(a.v_cache);
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  // Power-of-two block sizes (the engine's 16) index the table with a shift, not a division.
  const int bs = a.block_size;
  const int shift = (bs & (bs - 1)) == 0 ? __ffs(bs) - 1 : -1;
  // The kDecodeUnroll keys of the iteration at `base`: block table entry, then K and V chunks.
  auto load = [&](int base, Chunk* kr, Chunk* vr) {
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      const int pos = base + u * kStreams + stream;
      kr[u] = vr[u] = Chunk{};
      if (pos < hi) {
        const int blk = shift >= 0 ? pos >> shift : pos / bs;
        const int64_t slot = static_cast<int64_t>(table[blk]) * bs + (pos - blk * bs);
        const int64_t off = kv_row(slot, g, a.num_kv_heads) * D + c * 8;
        kr[u] = __ldg(reinterpret_cast<const Chunk*>(k_cache + off));
        vr[u] = __ldg(reinterpret_cast<const Chunk*>(v_cache + off));
      }
    }
  };
  constexpr int kStep = kStreams * kDecodeUnroll;
  // E4M3 caches pipeline the loads: the next iteration's table entries and K/V are in flight
  // while this one's scores and softmax are computed (the chain table -> K/V is two memory
  // latencies). 16-byte bf16/fp16 chunks would need twice the registers and spill.
  constexpr bool kPipelined = sizeof(C) == 1;
  Chunk kr[kDecodeUnroll], vr[kDecodeUnroll];
  if (kPipelined && lo < hi) load(lo, kr, vr);
  for (int base = lo; base < hi; base += kStep) {
    Chunk kn[kDecodeUnroll], vn[kDecodeUnroll];
    if (!kPipelined) {
      load(base, kr, vr);
    } else if (base + kStep < hi) {
      load(base + kStep, kn, vn);
    }
    float s[kDecodeUnroll][HG];
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      const C* ke = reinterpret_cast<const C*>(&kr[u]);
      float kf[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) kf[e] = to_float(ke[e]);
#pragma unroll
      for (int h = 0; h < HG; ++h) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot += q[h][e] * kf[e];
#pragma unroll
        for (int o = kLanes / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(lane_mask, dot, o);
        s[u][h] = base + u * kStreams + stream < hi ? dot : -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < HG; ++h) {
      float m_new = m[h];
#pragma unroll
      for (int u = 0; u < kDecodeUnroll; ++u) m_new = fmaxf(m_new, s[u][h]);
      // A stream may have seen no key yet (m_new = -inf): keep everything at zero, no NaN.
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float corr = exp2f(m[h] - m_use);
      l[h] *= corr;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] *= corr;
#pragma unroll
      for (int u = 0; u < kDecodeUnroll; ++u) {
        const float pu = exp2f(s[u][h] - m_use);
        l[h] += pu;
        const C* ve = reinterpret_cast<const C*>(&vr[u]);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] += pu * to_float(ve[e]);
      }
      m[h] = m_new;
    }
    if (kPipelined) {
#pragma unroll
      for (int u = 0; u < kDecodeUnroll; ++u) {
        kr[u] = kn[u];
        vr[u] = vn[u];
      }
    }
  }

  // Merge the streams: every stream's (m, l, acc) through shared memory.
  extern __shared__ __align__(16) float merge_s[];
  float* m_s = merge_s;                // [kStreams, HG]
  float* l_s = m_s + kStreams * HG;    // [kStreams, HG]
  float* acc_s = l_s + kStreams * HG;  // [kStreams, HG, D]
#pragma unroll
  for (int h = 0; h < HG; ++h) {
    if (c == 0) {
      m_s[stream * HG + h] = m[h];
      l_s[stream * HG + h] = l[h];
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) acc_s[(stream * HG + h) * D + c * 8 + e] = acc[h][e];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < hg * D; i += kDecodeThreads) {
    const int h = i / D, d = i % D;
    float mx = -INFINITY;
    for (int st = 0; st < kStreams; ++st) mx = fmaxf(mx, m_s[st * HG + h]);
    const float m_use = mx == -INFINITY ? 0.0f : mx;
    float L = 0.0f, A = 0.0f;
    for (int st = 0; st < kStreams; ++st) {
      const float w = exp2f(m_s[st * HG + h] - m_use);
      L += w * l_s[st * HG + h];
      A += w * acc_s[(st * HG + h) * D + d];
    }
    const int head = h0 + h;
    if (num_splits == 1) {
      T* out = static_cast<T*>(a.out) + (static_cast<int64_t>(t) * a.num_heads + head) * D;
      out[d] = from_float<T>(A / L * a.v_scale);
    } else {
      const int64_t row = (static_cast<int64_t>(t) * a.num_heads + head) * num_splits + split;
      part_o[row * D + d] = L > 0.0f ? A / L * a.v_scale : 0.0f;
      if (d == 0) part_lse[row] = L > 0.0f ? m_use + log2f(L) : -INFINITY;
    }
  }
}

// out[t, head, :] = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M). One block of D threads per
// (t, head): the split weights are computed once in shared memory, and each thread's loads
// over the splits are independent (unrolled), not a chain of dependent reads.
template <typename T, int D>
__global__ void __launch_bounds__(D)
    attention_combine_kernel(AttentionArgs a, int num_splits, const float* part_o,
                             const float* part_lse) {
  __shared__ float w_s[kDecodeMaxSplits];
  __shared__ float max_s[D / 32];
  const int t = blockIdx.x, head = blockIdx.y;
  if (token_in_prefill(a, a.seq_of_token[t])) return;
  const int64_t row0 = (static_cast<int64_t>(t) * a.num_heads + head) * num_splits;
  float mx = -INFINITY;
  for (int s = threadIdx.x; s < num_splits; s += D) {
    w_s[s] = part_lse[row0 + s];
    mx = fmaxf(mx, w_s[s]);
  }
  mx = warp_max(mx);
  if (threadIdx.x % 32 == 0) max_s[threadIdx.x / 32] = mx;
  __syncthreads();
  mx = max_s[0];
#pragma unroll
  for (int w = 1; w < D / 32; ++w) mx = fmaxf(mx, max_s[w]);
  for (int s = threadIdx.x; s < num_splits; s += D) w_s[s] = exp2f(w_s[s] - mx);  // empty: 0
  __syncthreads();
  const int d = threadIdx.x;
  float W = 0.0f, A = 0.0f;
#pragma unroll 8
  for (int s = 0; s < num_splits; ++s) {
    W += w_s[s];
    A += w_s[s] * part_o[(row0 + s) * D + d];
  }
  T* out = static_cast<T*>(a.out) + (static_cast<int64_t>(t) * a.num_heads + head) * D;
  out[d] = from_float<T>(A / W);
}

template <typename T, typename C, int D, int HG>
cudaError_t launch_attention_decode_hg(const AttentionArgs& a, const DecodeSplitPlan& plan, int hg,
                                       cudaStream_t stream) {
  constexpr int kStreams = kDecodeThreads / (D / 8);
  const size_t smem = sizeof(float) * kStreams * HG * (D + 2);
  auto* kernel = attention_decode_kernel<T, C, D, HG>;
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  float* part_o = static_cast<float*>(a.workspace);
  float* part_lse = part_o + size_t(a.num_tokens) * a.num_heads * plan.num_splits * D;
  const int G = a.num_heads / a.num_kv_heads;
  const dim3 grid(a.num_tokens, a.num_kv_heads * (G / hg), plan.num_splits);
  kernel<<<grid, kDecodeThreads, smem, stream>>>(a, plan.num_splits, plan.split_len, hg, part_o,
                                                 part_lse);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || plan.num_splits == 1) return err;
  attention_combine_kernel<T, D>
      <<<dim3(a.num_tokens, a.num_heads), D, 0, stream>>>(a, plan.num_splits, part_o, part_lse);
  return cudaGetLastError();
}

// Query heads per block: the largest divisor of G that is <= 8.
inline int decode_heads_per_group(int G) {
  for (int hg = 8; hg > 1; --hg) {
    if (G % hg == 0) return hg;
  }
  return 1;
}

template <typename T, typename C, int D>
cudaError_t launch_attention_decode(const AttentionArgs& a, const DecodeSplitPlan& plan,
                                    cudaStream_t stream) {
  const int hg = decode_heads_per_group(a.num_heads / a.num_kv_heads);
  if (hg <= 2) return launch_attention_decode_hg<T, C, D, 2>(a, plan, hg, stream);
  if (hg <= 4) return launch_attention_decode_hg<T, C, D, 4>(a, plan, hg, stream);
  return launch_attention_decode_hg<T, C, D, 8>(a, plan, hg, stream);
}

}  // namespace mixserve::cuda
