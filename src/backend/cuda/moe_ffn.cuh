// The element-wise parts of the expert FFN around the cuBLASLt GEMMs: gather of the routed
// rows, SiLU(gate) * up, and the weighted combine of each token's K expert outputs.
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

constexpr int kMoeMaxTopK = 16;

// One block per gathered row.  src: [*, H]; index: [n]; dst: [n, H]
template <typename T>
__global__ void gather_rows_kernel(const T* src, const int32_t* index, int H, T* dst) {
  const int r = blockIdx.x;
  const T* s = src + static_cast<int64_t>(index[r]) * H;
  T* d = dst + static_cast<int64_t>(r) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) d[i] = s[i];
}

// Grid-stride over n * F.  gate_up: [n, 2F]; out: [n, F]
template <typename T>
__global__ void silu_mul_kernel(const T* gate_up, int64_t n, int F, T* out) {
  const int64_t total = n * F;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / F;
    const int f = static_cast<int>(i % F);
    const float g = to_float(gate_up[r * 2 * F + f]);
    const float u = to_float(gate_up[r * 2 * F + F + f]);
    out[i] = from_float<T>(g / (1.0f + expf(-g)) * u);
  }
}

// The same over 8-element chunks (16-byte loads and stores), F % 8 == 0: block (x, y) holds
// rows y, y + gridDim.y, ... and, of each, the kSiluVecThreads * 2 chunks from
// x * kSiluVecThreads * 2; a thread loads its two chunks' gate and up (64 bytes) before any
// math. No per-element division: the row is the block's, the chunk its thread's.
constexpr int kSiluVecThreads = 128;
template <typename T>
__global__ void __launch_bounds__(kSiluVecThreads)
    silu_mul_vec_kernel(const T* __restrict__ gate_up, int n, int F, T* __restrict__ out) {
  const int chunks = F / 8;
  const int c0 = blockIdx.x * (2 * kSiluVecThreads) + threadIdx.x;
  for (int r = blockIdx.y; r < n; r += gridDim.y) {
    const uint4* g = reinterpret_cast<const uint4*>(gate_up + int64_t{r} * 2 * F);
    const uint4* u = reinterpret_cast<const uint4*>(gate_up + int64_t{r} * 2 * F + F);
    uint4* o = reinterpret_cast<uint4*>(out + int64_t{r} * F);
    uint4 gv[2], uv[2];
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int c = c0 + k * kSiluVecThreads;
      if (c < chunks) {
        gv[k] = g[c];
        uv[k] = u[c];
      }
    }
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int c = c0 + k * kSiluVecThreads;
      if (c >= chunks) continue;
      const T* gt = reinterpret_cast<const T*>(&gv[k]);
      const T* ut = reinterpret_cast<const T*>(&uv[k]);
      uint4 ov;
      T* ot = reinterpret_cast<T*>(&ov);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float a = to_float(gt[j]);
        ot[j] = from_float<T>(a / (1.0f + expf(-a)) * to_float(ut[j]));
      }
      o[c] = ov;
    }
  }
}

// One block per token.  y: [T*K, H]; experts, weights, pair_pos: [T, K]; out: [T, H]
__global__ void moe_combine_kernel(const float* y, const int32_t* experts, const float* weights,
                                   const int32_t* pair_pos, int K, int H, float* out) {
  const int t = blockIdx.x;
  // The token's slots in ascending expert order (insertion sort of at most 16).
  int order[kMoeMaxTopK];
  for (int k = 0; k < K; ++k) {
    int j = k;
    while (j > 0 && experts[t * K + order[j - 1]] > experts[t * K + k]) {
      order[j] = order[j - 1];
      --j;
    }
    order[j] = k;
  }
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) {
      const int slot = t * K + order[k];
      acc += y[static_cast<int64_t>(pair_pos[slot]) * H + h] * weights[slot];
    }
    out[static_cast<int64_t>(t) * H + h] = acc;
  }
}

// The token's K slots (kK of them) in ascending expert order, stable (insertion sort).
template <int kK>
__device__ __forceinline__ void sorted_slots(const int32_t* experts, int t, int (&order)[kK]) {
#pragma unroll
  for (int k = 0; k < kK; ++k) {
    int j = k;
    while (j > 0 && experts[t * kK + order[j - 1]] > experts[t * kK + k]) {
      order[j] = order[j - 1];
      --j;
    }
    order[j] = k;
  }
}

// The same for K == kK and H % 4 == 0 (16-byte aligned rows): float4 loads, each thread loads
// its kCombineUnroll float4 of all kK rows (kK * 64 bytes) before it adds any; the same
// per-element sum order as above (acc = 0, then += y * w slot by slot).
constexpr int kCombineThreads = 256, kCombineUnroll = 4;
template <int kK>
__global__ void __launch_bounds__(kCombineThreads)
    moe_combine_vec_kernel(const float* __restrict__ y, const int32_t* __restrict__ experts,
                           const float* __restrict__ weights, const int32_t* __restrict__ pair_pos,
                           int H, float* __restrict__ out) {
  const int t = blockIdx.x;
  int order[kK];
  sorted_slots<kK>(experts, t, order);
  const float4* rows[kK];
  float w[kK];
#pragma unroll
  for (int k = 0; k < kK; ++k) {
    const int slot = t * kK + order[k];
    rows[k] = reinterpret_cast<const float4*>(y + static_cast<int64_t>(pair_pos[slot]) * H);
    w[k] = weights[slot];
  }
  float4* o = reinterpret_cast<float4*>(out + static_cast<int64_t>(t) * H);
  const int chunks = H / 4;
  for (int base = threadIdx.x; base < chunks; base += kCombineThreads * kCombineUnroll) {
    float4 v[kCombineUnroll][kK];
#pragma unroll
    for (int u = 0; u < kCombineUnroll; ++u) {
      const int i = base + u * kCombineThreads;
#pragma unroll
      for (int k = 0; k < kK; ++k) {
        if (i < chunks) v[u][k] = rows[k][i];
      }
    }
#pragma unroll
    for (int u = 0; u < kCombineUnroll; ++u) {
      const int i = base + u * kCombineThreads;
      if (i >= chunks) continue;
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
      for (int k = 0; k < kK; ++k) {
        acc.x += v[u][k].x * w[k];
        acc.y += v[u][k].y * w[k];
        acc.z += v[u][k].z * w[k];
        acc.w += v[u][k].w * w[k];
      }
      o[i] = acc;
    }
  }
}

}  // namespace mixserve::cuda
