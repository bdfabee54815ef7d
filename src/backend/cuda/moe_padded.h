// The grouped, padded MoE layout of decode-sized steps (launchers; kernels in moe_padded.cuh).
//
// G = min(E, T*K) groups of C = T rows each (no expert can receive more than every token).
// Group g < (number of experts with rows) is the g-th such expert in ascending order; the
// remaining groups have no rows and reuse group 0's expert. The expert GEMMs are then two
// pointer-array batched GEMMs of G entries whose shapes do not depend on the routing: no
// per-expert counts on the host, no sync, capturable in a CUDA graph; and a batch-1 step reads
// only its K experts' weights (G = K), not all E.
// Shapes: E experts, H hidden, F FFN size, T*K (token, slot) pairs. Device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "model/dtype.h"

namespace mixserve::cuda {

struct MoeGroupArgs {
  const int32_t* counts = nullptr;  // [E] rows per expert (moe_sort)
  int E = 0, G = 0, C = 0;
  int32_t* group_expert = nullptr;  // [G] out
  int32_t* group_count = nullptr;   // [G] out: rows of the group (0 for unused groups)
  int32_t* expert_group = nullptr;  // [E] out: group of each expert with rows, else -1
  // Out: [6, G] operand pointers of the two GEMMs: x13, w13, y13, x2, w2, y2 of each group.
  const void** ptrs = nullptr;
  const void* gathered = nullptr;  // [G*C, H] dt
  const void* w13 = nullptr;       // [E, 2F, H] dt
  void* gate_up = nullptr;         // [G*C, 2F] dt
  const void* act = nullptr;       // [G*C, F] dt
  const void* w2 = nullptr;        // [E, H, F] dt
  void* expert_out = nullptr;      // [G*C, H] float
  int H = 0, F = 0;
  size_t elem = 2;  // bytes of dt
};
// One thread: fills the groups and the pointer arrays from the counts.
cudaError_t moe_group_experts(const MoeGroupArgs& args, cudaStream_t stream);

// dst[g*C + j, :] = j < group_count[g] ? src[sorted_token[offsets[group_expert[g]] + j], :] : 0
//   src: [*, H] dt; offsets: [E+1]; sorted_token: [T*K]; dst: [G*C, H] dt
cudaError_t gather_rows_grouped(const void* src, const int32_t* group_expert,
                                const int32_t* group_count, const int32_t* offsets,
                                const int32_t* sorted_token, int G, int C, int H, void* dst,
                                DType dt, cudaStream_t stream);

// In place: pair_pos[p] (the pair's row in the sorted order) -> its row in the grouped layout,
// expert_group[e]*C + (pair_pos[p] - offsets[e]) with e = experts[p].  experts, pair_pos: [n]
cudaError_t group_pair_positions(const int32_t* experts, const int32_t* offsets,
                                 const int32_t* expert_group, int n, int C, int32_t* pair_pos,
                                 cudaStream_t stream);

}  // namespace mixserve::cuda
