// Kernels of expert parallelism in the MoE layer (see moe_expert_parallel.h).
#pragma once

#include "backend/cuda/moe_expert_parallel.h"

namespace mixserve::cuda {

constexpr int kEpMaxTopK = 16;

// One thread per pair.  experts: [n]
__global__ void moe_localize_experts_kernel(int32_t* experts, int n, int begin, int El) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  const int local = experts[p] - begin;
  experts[p] = local >= 0 && local < El ? local : El;
}

// One block per token.  y: [*, H]; experts, weights, pair_pos: [T, K]; out: [T, H]
__global__ void moe_combine_local_kernel(const float* y, const int32_t* experts,
                                         const float* weights, const int32_t* pair_pos, int K,
                                         int H, int El, float* out) {
  const int t = blockIdx.x;
  // The token's local slots in ascending expert order (insertion sort of at most 16), as
  // moe_combine orders them.
  int order[kEpMaxTopK];
  int n = 0;
  for (int k = 0; k < K; ++k) {
    const int e = experts[t * K + k];
    if (e >= El) continue;
    int j = n++;
    while (j > 0 && experts[t * K + order[j - 1]] > e) {
      order[j] = order[j - 1];
      --j;
    }
    order[j] = k;
  }
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int slot = t * K + order[i];
      acc += y[static_cast<int64_t>(pair_pos[slot]) * H + h] * weights[slot];
    }
    out[static_cast<int64_t>(t) * H + h] = acc;
  }
}

}  // namespace mixserve::cuda
