// Expert parallelism in the MoE layer (launchers; kernels in moe_expert_parallel.cuh): a rank
// holding experts [begin, begin + El) keeps the full routing (all E experts, so the top-k and
// its weights are the unsharded model's), computes only the (token, slot) pairs routed to its
// experts, and its combine adds only those; the all-reduce over the ranks adds the rest.
// Shapes: T tokens, K experts per token, H hidden. Device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace mixserve::cuda {

// In place, experts[p] := experts[p] - begin when it lies in [begin, begin + El), else El (a
// last bucket, after the local experts, that moe_sort fills and nothing computes).
//   experts: [n] (n = T*K)
cudaError_t moe_localize_experts(int32_t* experts, int n, int begin, int El, cudaStream_t stream);

// moe_combine (kernels.h) over the local pairs only: out[t, :] = sum over t's slots with
// experts[t,k] < El, in ascending expert order, of weights[t,k] * y[pair_pos[t,k]] (0 when
// none). The rows of other ranks' pairs in y are never read.
//   y: [*, H] float; experts, weights, pair_pos: [T, K]; out: [T, H] float. K <= 16.
cudaError_t moe_combine_local(const float* y, const int32_t* experts, const float* weights,
                              const int32_t* pair_pos, int T, int K, int H, int El, float* out,
                              cudaStream_t stream);

}  // namespace mixserve::cuda
