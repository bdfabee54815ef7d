// Kernels of the grouped, padded MoE layout (see moe_padded.h).
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/moe_groups.cuh"
#include "backend/cuda/moe_padded.h"

namespace mixserve::cuda {

__global__ void moe_group_experts_kernel(MoeGroupArgs a) {
  assign_moe_groups(a.counts, a.E, a.G, a.group_expert, a.group_count, a.expert_group);
  const size_t C = a.C, H = a.H, F = a.F, el = a.elem;
  for (int g = 0; g < a.G; ++g) {
    const size_t e = a.group_expert[g], row0 = g * C;
    a.ptrs[0 * a.G + g] = static_cast<const char*>(a.gathered) + row0 * H * el;
    a.ptrs[1 * a.G + g] = static_cast<const char*>(a.w13) + e * 2 * F * H * el;
    a.ptrs[2 * a.G + g] = static_cast<char*>(a.gate_up) + row0 * 2 * F * el;
    a.ptrs[3 * a.G + g] = static_cast<const char*>(a.act) + row0 * F * el;
    a.ptrs[4 * a.G + g] = static_cast<const char*>(a.w2) + e * H * F * el;
    a.ptrs[5 * a.G + g] = static_cast<char*>(a.expert_out) + row0 * H * sizeof(float);
  }
}

// One block per grouped row.  dst: [G*C, H]
template <typename T>
__global__ void gather_rows_grouped_kernel(const T* src, const int32_t* group_expert,
                                           const int32_t* group_count, const int32_t* offsets,
                                           const int32_t* sorted_token, int C, int H, T* dst) {
  const int r = blockIdx.x, g = r / C, j = r % C;
  T* d = dst + static_cast<int64_t>(r) * H;
  if (j >= group_count[g]) {  // unused capacity: zeros, never NaN garbage
    for (int i = threadIdx.x; i < H; i += blockDim.x) d[i] = from_float<T>(0.0f);
    return;
  }
  const T* s = src + static_cast<int64_t>(sorted_token[offsets[group_expert[g]] + j]) * H;
  for (int i = threadIdx.x; i < H; i += blockDim.x) d[i] = s[i];
}

__global__ void group_pair_positions_kernel(const int32_t* experts, const int32_t* offsets,
                                            const int32_t* expert_group, int n, int C,
                                            int32_t* pair_pos) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  const int e = experts[p];
  pair_pos[p] = expert_group[e] * C + (pair_pos[p] - offsets[e]);
}

}  // namespace mixserve::cuda
