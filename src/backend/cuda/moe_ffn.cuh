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

// The same over 8-element chunks (16-byte loads and stores), F % 8 == 0.
template <typename T>
__global__ void silu_mul_vec_kernel(const T* gate_up, int64_t n, int F, T* out) {
  const int chunks = F / 8;
  const int64_t total = n * chunks;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / chunks;
    const int c = static_cast<int>(i - r * chunks);
    const uint4 gv = reinterpret_cast<const uint4*>(gate_up + r * 2 * F)[c];
    const uint4 uv = reinterpret_cast<const uint4*>(gate_up + r * 2 * F + F)[c];
    const T* g = reinterpret_cast<const T*>(&gv);
    const T* u = reinterpret_cast<const T*>(&uv);
    uint4 ov;
    T* o = reinterpret_cast<T*>(&ov);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float a = to_float(g[j]);
      o[j] = from_float<T>(a / (1.0f + expf(-a)) * to_float(u[j]));
    }
    reinterpret_cast<uint4*>(out + r * F)[c] = ov;
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

}  // namespace mixserve::cuda
