// FP8 E4M3 quantization kernels (see fp8_kernels.h for the formulas and the scale layouts).
// Each kernel handles one row per block: a first pass finds the row's amax (and, for the
// norm, its mean square), a second pass writes the quantized values, so the row is quantized
// where it is produced, not in an extra pass over memory.
#pragma once

#include <cuda_fp8.h>

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/fp8_pack.cuh"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/moe_padded_fp8.h"

namespace mixserve::cuda {

constexpr int kQuantThreads = 256;


// Block-wide reduction (sum or max) of one float per thread; every thread gets the result.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v) {
  __shared__ float partial[kQuantThreads / 32];
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // partial may still be read by a previous reduction
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float r = partial[0];
  for (int i = 1; i < kQuantThreads / 32; ++i) r = kMax ? fmaxf(r, partial[i]) : r + partial[i];
  return r;
}

// (scale, inverse) of a row with max |value| amax.
__device__ __forceinline__ float2 fp8_row_scale(float amax) {
  return amax > 0.0f ? make_float2(amax / kFp8Max, kFp8Max / amax) : make_float2(1.0f, 0.0f);
}

// The block's row of kChunks × 8 register values per thread (chunk c of thread t is the row's
// chunk c * kQuantThreads + t, `chunks` in all), quantized with the row's scale and stored as
// E4M3; returns (scale, inverse). amax: this thread's max |value|.
template <int kChunks>
__device__ __forceinline__ float2 store_row_e4m3(const float (&v)[kChunks][8], float amax,
                                                 int chunks, uint8_t* q_row) {
  const float2 si = fp8_row_scale(block_reduce<true>(amax));
  uint2* d = reinterpret_cast<uint2*>(q_row);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kQuantThreads + threadIdx.x;
    if (i < chunks) d[i] = pack_e4m3x8(v[c], si.y);
  }
  return si;
}

// Padded scale index of sorted MoE row r (fp8_kernels.h); offsets: [E + 1] or null.
__device__ __forceinline__ int64_t padded_row(int64_t r, const int32_t* offsets, int E) {
  if (offsets == nullptr) return r;
  int64_t pad = 0;
  for (int e = 0; e < E && offsets[e + 1] <= r; ++e) {
    const int c = offsets[e + 1] - offsets[e];
    pad += (c + 3) / 4 * 4 - c;
  }
  return r + pad;
}

// One block per row.  src: [R, C]; q: [R, C]; scales: [R]
template <typename T>
__global__ void quantize_rows_fp8_kernel(const T* src, int C, uint8_t* q, float* scales) {
  const int64_t r = blockIdx.x;
  const T* s = src + r * C;
  float amax = 0.0f;
  for (int i = threadIdx.x; i < C; i += blockDim.x) amax = fmaxf(amax, fabsf(to_float(s[i])));
  const float2 si = fp8_row_scale(block_reduce<true>(amax));
  uint8_t* d = q + r * C;
  for (int i = threadIdx.x; i < C; i += blockDim.x) d[i] = to_e4m3(to_float(s[i]) * si.y);
  if (threadIdx.x == 0) scales[r] = si.x;
}

// The same with the row in registers: 16-byte loads of 8 values, kChunks a thread
// (C % 8 == 0, C <= 8 * kChunks * kQuantThreads); one read pass instead of two.
template <typename T, int kChunks>
__global__ void quantize_rows_fp8_vec_kernel(const T* src, int C, uint8_t* q, float* scales) {
  const int64_t r = blockIdx.x;
  const uint4* s = reinterpret_cast<const uint4*>(src + r * C);
  const int chunks = C / 8;
  float v[kChunks][8];
  float amax = 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kQuantThreads + threadIdx.x;
    if (i < chunks) {
      const uint4 raw = s[i];
      const T* t = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        v[c][j] = to_float(t[j]);
        amax = fmaxf(amax, fabsf(v[c][j]));
      }
    }
  }
  const float2 si = store_row_e4m3<kChunks>(v, amax, chunks, q + r * C);
  if (threadIdx.x == 0) scales[r] = si.x;
}

// One block per row.  x, delta: [R, H] float; w: [H]; out_half: [R, H] or null; q: [R, H]
template <typename T>
__global__ void add_rms_norm_fp8_kernel(float* x, const float* delta, int H, const T* w, float eps,
                                        T* out_half, uint8_t* q, float* scales,
                                        const float* delta_row, const float* delta_col) {
  const int64_t r = blockIdx.x;
  float* xr = x + r * H;
  const float* dr = delta ? delta + r * H : nullptr;
  const float ds = delta_col != nullptr ? delta_row[r] : 1.0f;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    float v = xr[i];
    if (dr) {
      v += delta_col != nullptr ? dr[i] * (ds * delta_col[i]) : dr[i];
      xr[i] = v;  // each thread re-reads only the elements it wrote
    }
    sum_sq += v * v;
  }
  const float inv_rms = 1.0f / sqrtf(block_reduce<false>(sum_sq) / static_cast<float>(H) + eps);
  float amax = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    const float n = to_float(w[i]) * (xr[i] * inv_rms);
    if (out_half) out_half[r * H + i] = from_float<T>(n);
    amax = fmaxf(amax, fabsf(n));
  }
  const float2 si = fp8_row_scale(block_reduce<true>(amax));
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    q[r * H + i] = to_e4m3(to_float(w[i]) * (xr[i] * inv_rms) * si.y);
  }
  if (threadIdx.x == 0) scales[r] = si.x;
}

// The same with the row in registers: one read pass of float4 loads, kChunks float4 chunks a
// thread (H % 4 == 0, H <= 4 * kChunks * kQuantThreads). The three-pass kernel above reads
// the row three times with 4-byte loads (~17 us a row at batch 1, docs/perf/NOTES.md).
// The row's body, shared with the MoE combine's fused norm (moe_padded_fp8.cuh):
// delta(i, &d) writes float4 chunk i of row r's delta into d and returns false when there is
// none (x is then only read).
template <typename T, int kChunks, typename Delta>
__device__ __forceinline__ void add_rms_norm_fp8_row(float* x, int64_t r, int H, const T* w,
                                                     float eps, T* out_half, uint8_t* q,
                                                     float* scales, const Delta& delta) {
  float4* xr = reinterpret_cast<float4*>(x + r * H);
  const int chunks = H / 4;
  float4 v[kChunks];
  float sum_sq = 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kQuantThreads + threadIdx.x;
    if (i < chunks) {
      float4 a = xr[i];
      float4 d;
      if (delta(i, &d)) {
        a.x += d.x;
        a.y += d.y;
        a.z += d.z;
        a.w += d.w;
        xr[i] = a;
      }
      v[c] = a;
      sum_sq += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
  }
  const float inv_rms = 1.0f / sqrtf(block_reduce<false>(sum_sq) / static_cast<float>(H) + eps);
  float amax = 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kQuantThreads + threadIdx.x;
    if (i < chunks) {
      const uint2 wraw = reinterpret_cast<const uint2*>(w)[i];
      const T* wt = reinterpret_cast<const T*>(&wraw);
      float4& n = v[c];
      n.x = to_float(wt[0]) * (n.x * inv_rms);
      n.y = to_float(wt[1]) * (n.y * inv_rms);
      n.z = to_float(wt[2]) * (n.z * inv_rms);
      n.w = to_float(wt[3]) * (n.w * inv_rms);
      if (out_half) {
        uint2 hraw;
        T* ht = reinterpret_cast<T*>(&hraw);
        ht[0] = from_float<T>(n.x);
        ht[1] = from_float<T>(n.y);
        ht[2] = from_float<T>(n.z);
        ht[3] = from_float<T>(n.w);
        reinterpret_cast<uint2*>(out_half + r * H)[i] = hraw;
      }
      amax = fmaxf(amax, fmaxf(fmaxf(fabsf(n.x), fabsf(n.y)), fmaxf(fabsf(n.z), fabsf(n.w))));
    }
  }
  const float2 si = fp8_row_scale(block_reduce<true>(amax));
  uint32_t* qr = reinterpret_cast<uint32_t*>(q + r * H);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kQuantThreads + threadIdx.x;
    if (i < chunks) {
      const float4 n = v[c];
      qr[i] = uint32_t{to_e4m3(n.x * si.y)} | uint32_t{to_e4m3(n.y * si.y)} << 8 |
              uint32_t{to_e4m3(n.z * si.y)} << 16 | uint32_t{to_e4m3(n.w * si.y)} << 24;
    }
  }
  if (threadIdx.x == 0) scales[r] = si.x;
}

template <typename T, int kChunks>
__global__ void add_rms_norm_fp8_vec_kernel(float* x, const float* delta, int H, const T* w,
                                            float eps, T* out_half, uint8_t* q, float* scales,
                                            const float* delta_row, const float* delta_col) {
  const int64_t r = blockIdx.x;
  const float4* dr = delta ? reinterpret_cast<const float4*>(delta + r * H) : nullptr;
  const float4* dc = reinterpret_cast<const float4*>(delta_col);
  const float ds = dc != nullptr ? delta_row[r] : 1.0f;
  add_rms_norm_fp8_row<T, kChunks>(x, r, H, w, eps, out_half, q, scales,
                                   [dr, dc, ds](int i, float4* d) {
                                     if (dr == nullptr) return false;
                                     *d = dr[i];
                                     if (dc != nullptr) {  // an unscaled GEMM's sums
                                       const float4 c = dc[i];
                                       d->x *= ds * c.x;
                                       d->y *= ds * c.y;
                                       d->z *= ds * c.z;
                                       d->w *= ds * c.w;
                                     }
                                     return true;
                                   });
}

// add_rms_norm_fp8_vec_kernel whose delta is the grouped FP8 MoE's weighted combine
// (moe_padded_fp8.h, add_rms_norm_fp8_moe): the sums of moe_combine_grouped_fp8_kernel in the
// same order with the same float operations, so x ends bit-identical to the two kernels.
template <typename T, int kChunks>
__global__ void add_rms_norm_fp8_moe_kernel(float* x, MoeCombineFp8 m, int H, const T* w,
                                            float eps, T* out_half, uint8_t* q, float* scales) {
  __shared__ int64_t rows[kMoeCombineMaxTopK];
  __shared__ float coefs[kMoeCombineMaxTopK];
  __shared__ int row_experts[kMoeCombineMaxTopK];
  __shared__ int live;
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    // The token's slots of experts < E in ascending expert order (insertion sort).
    int order[kMoeCombineMaxTopK];
    int n = 0;
    for (int k = 0; k < m.K; ++k) {
      const int e = m.experts[t * m.K + k];
      if (e >= m.E) continue;
      int j = n++;
      while (j > 0 && m.experts[t * m.K + order[j - 1]] > e) {
        order[j] = order[j - 1];
        --j;
      }
      order[j] = k;
    }
    for (int k = 0; k < n; ++k) {
      const int64_t slot = t * m.K + order[k];
      const int64_t r = m.pair_pos[slot];
      rows[k] = r;
      coefs[k] = m.weights[slot] * m.act_scales[r];
      row_experts[k] = m.experts[slot];
    }
    live = n;
  }
  __syncthreads();
  const int n = live;
  const __nv_bfloat16* raw2 = static_cast<const __nv_bfloat16*>(m.raw2);
  const float4* w2s = reinterpret_cast<const float4*>(m.w2_scales);
  const int64_t h4 = H / 4;
  add_rms_norm_fp8_row<T, kChunks>(
      x, t, H, w, eps, out_half, q, scales, [&](int i, float4* d) {
        float acc[4] = {};
        auto add = [&acc](const float* xv, const float4& sv4, float coef) {
          const float sv[4] = {sv4.x, sv4.y, sv4.z, sv4.w};
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[j] += xv[j] * sv[j] * coef;
        };
        if (n == 2) {  // top-2: both rows' loads in flight at once
          float x0[4], x1[4];
          load_bf16<4>(raw2 + (rows[0] * h4 + i) * 4, x0);
          load_bf16<4>(raw2 + (rows[1] * h4 + i) * 4, x1);
          const float4 s0 = __ldg(w2s + row_experts[0] * h4 + i);
          const float4 s1 = __ldg(w2s + row_experts[1] * h4 + i);
          add(x0, s0, coefs[0]);
          add(x1, s1, coefs[1]);
        } else {
          for (int k = 0; k < n; ++k) {
            float xk[4];
            load_bf16<4>(raw2 + (rows[k] * h4 + i) * 4, xk);
            add(xk, __ldg(w2s + row_experts[k] * h4 + i), coefs[k]);
          }
        }
        *d = make_float4(acc[0], acc[1], acc[2], acc[3]);
        return true;
      });
}

// One block per row.  gate_up: [n, 2F]; q: [n, F]; scales: padded
template <typename T>
__global__ void silu_mul_fp8_kernel(const T* gate_up, int F, uint8_t* q, float* scales,
                                    const int32_t* offsets, int E) {
  const int64_t r = blockIdx.x;
  const T* g = gate_up + r * 2 * F;
  float amax = 0.0f;
  for (int f = threadIdx.x; f < F; f += blockDim.x) {
    const float a = to_float(g[f]);
    amax = fmaxf(amax, fabsf(a / (1.0f + expf(-a)) * to_float(g[F + f])));
  }
  const float2 si = fp8_row_scale(block_reduce<true>(amax));
  for (int f = threadIdx.x; f < F; f += blockDim.x) {
    const float a = to_float(g[f]);
    q[r * F + f] = to_e4m3(a / (1.0f + expf(-a)) * to_float(g[F + f]) * si.y);
  }
  if (threadIdx.x == 0) scales[padded_row(r, offsets, E)] = si.x;
}

// Block-wide reduction (sum or max) of one float per thread for blocks of any multiple of 32
// threads up to 1024; every thread gets the result.
template <bool kMax>
__device__ __forceinline__ float block_reduce_any(float v) {
  __shared__ float partial[32];
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // partial may still be read by a previous reduction
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float r = partial[0];
  for (int i = 1; i < static_cast<int>(blockDim.x / 32); ++i) {
    r = kMax ? fmaxf(r, partial[i]) : r + partial[i];
  }
  return r;
}

// The same with the row held in registers: one read pass of 16-byte loads (8 gate and 8 up
// values per chunk), F % 8 == 0. The block has just enough threads (a multiple of 32, at most
// kSiluFp8MaxThreads) for kChunks chunks each, and every thread issues all its loads (kChunks
// * 32 bytes) before any math. kMinBlocks: blocks an SM must hold (the register budget);
// with two or more, one block's loads overlap another's math and reduction. At 16,384 rows of
// F 14,336 on an H100: 3.0 TB/s; the first version (256 threads × up to 8 chunks, 104
// registers, 2 blocks of 8 warps an SM) 1.95, and a persistent kernel streaming whole rows
// through shared memory with cp.async.bulk 2.88 (bench-kernels, docs/perf/NOTES.md).
constexpr int kSiluFp8MaxThreads = 448;
// Blocks an SM must hold at 4 chunks a thread (F = 14336): 2 caps the kernel at 72 registers.
constexpr int kSiluFp8MinBlocks4 = 2;
// kUnscaled: gate_up holds unscaled FP8 GEMM sums; the true values are gate_up[r, j] *
// in_row[r] * in_col[j] (j < 2F), applied before SiLU (in_col 16-byte aligned). Else in_row
// and in_col are null.
template <typename T, int kChunks, int kMinBlocks, bool kUnscaled>
__global__ void __launch_bounds__(kSiluFp8MaxThreads, kMinBlocks)
    silu_mul_fp8_vec_kernel(const T* __restrict__ gate_up, int F, uint8_t* __restrict__ q,
                            float* __restrict__ scales, const int32_t* offsets, int E,
                            const float* __restrict__ in_row, const float* __restrict__ in_col) {
  const int64_t r = blockIdx.x;
  const uint4* g = reinterpret_cast<const uint4*>(gate_up + r * 2 * F);
  const uint4* u = reinterpret_cast<const uint4*>(gate_up + r * 2 * F + F);
  const int chunks = F / 8;
  uint4 gv[kChunks], uv[kChunks];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * blockDim.x + threadIdx.x;
    if (i < chunks) {
      gv[c] = g[i];
      uv[c] = u[i];
    }
  }
  const float rs = kUnscaled ? in_row[r] : 1.0f;
  float v[kChunks][8];
  float amax = 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * blockDim.x + threadIdx.x;
    if (i < chunks) {
      const T* gt = reinterpret_cast<const T*>(&gv[c]);
      const T* ut = reinterpret_cast<const T*>(&uv[c]);
      float gc[8], uc[8];
      if constexpr (kUnscaled) {
        const float4* cg = reinterpret_cast<const float4*>(in_col + 8 * i);
        const float4* cu = reinterpret_cast<const float4*>(in_col + F + 8 * i);
        *reinterpret_cast<float4*>(gc) = cg[0];
        *reinterpret_cast<float4*>(gc + 4) = cg[1];
        *reinterpret_cast<float4*>(uc) = cu[0];
        *reinterpret_cast<float4*>(uc + 4) = cu[1];
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float a = to_float(gt[j]), b = to_float(ut[j]);
        if constexpr (kUnscaled) {
          a *= rs * gc[j];
          b *= rs * uc[j];
        }
        v[c][j] = a / (1.0f + expf(-a)) * b;
        amax = fmaxf(amax, fabsf(v[c][j]));
      }
    }
  }
  const float2 si = fp8_row_scale(block_reduce_any<true>(amax));
  uint2* d = reinterpret_cast<uint2*>(q + r * F);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * blockDim.x + threadIdx.x;
    if (i < chunks) d[i] = pack_e4m3x8(v[c], si.y);
  }
  if (threadIdx.x == 0) scales[padded_row(r, offsets, E)] = si.x;
}

// One block per gathered row, 16-byte copies.  src_q: [*, H]; dst_q: [n, H]
__global__ void gather_rows_fp8_kernel(const uint8_t* src_q, const float* src_scales,
                                       const int32_t* index, int H, const int32_t* offsets, int E,
                                       uint8_t* dst_q, float* dst_scales) {
  const int64_t r = blockIdx.x;
  const int64_t from = index[r];
  const uint4* s = reinterpret_cast<const uint4*>(src_q + from * H);
  uint4* d = reinterpret_cast<uint4*>(dst_q + r * H);
  for (int i = threadIdx.x; i < H / 16; i += blockDim.x) d[i] = s[i];
  if (threadIdx.x == 0) dst_scales[padded_row(r, offsets, E)] = src_scales[from];
}

// y[r, n] *= row[r] * col[n].  y: [R, N] float. A thread loads kScaleUnroll float4 of the
// row (and of col) before it stores any.
constexpr int kScaleThreads = 256, kScaleUnroll = 4;
__global__ void __launch_bounds__(kScaleThreads)
    scale_rows_cols_kernel(float* y, int N, const float* __restrict__ row,
                           const float* __restrict__ col) {
  const int64_t r = blockIdx.x;
  const float rs = row[r];
  float4* yr = reinterpret_cast<float4*>(y + r * N);
  const float4* c4 = reinterpret_cast<const float4*>(col);
  const int chunks = N / 4;
  for (int base = threadIdx.x; base < chunks; base += kScaleThreads * kScaleUnroll) {
    float4 v[kScaleUnroll], c[kScaleUnroll];
#pragma unroll
    for (int k = 0; k < kScaleUnroll; ++k) {
      const int i = base + k * kScaleThreads;
      if (i < chunks) {
        v[k] = yr[i];
        c[k] = c4[i];
      }
    }
#pragma unroll
    for (int k = 0; k < kScaleUnroll; ++k) {
      const int i = base + k * kScaleThreads;
      if (i >= chunks) continue;
      v[k].x *= rs * c[k].x;
      v[k].y *= rs * c[k].y;
      v[k].z *= rs * c[k].z;
      v[k].w *= rs * c[k].w;
      yr[i] = v[k];
    }
  }
}

__global__ void fill_scales_kernel(float* scales, int64_t R, float value) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < R) scales[i] = value;
}

}  // namespace mixserve::cuda
