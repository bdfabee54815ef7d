#include "backend/cuda/moe_padded.cuh"

namespace mixserve::cuda {

cudaError_t moe_group_experts(const MoeGroupArgs& args, cudaStream_t stream) {
  if (args.E <= 0 || args.G <= 0) return cudaSuccess;
  moe_group_experts_kernel<<<1, 1, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t gather_rows_grouped(const void* src, const int32_t* group_expert,
                                const int32_t* group_count, const int32_t* offsets,
                                const int32_t* sorted_token, int G, int C, int H, void* dst,
                                DType dt, cudaStream_t stream) {
  if (G <= 0 || C <= 0) return cudaSuccess;
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    gather_rows_grouped_kernel<T>
        <<<G * C, 256, 0, stream>>>(static_cast<const T*>(src), group_expert, group_count, offsets,
                                    sorted_token, C, H, static_cast<T*>(dst));
    return cudaGetLastError();
  });
}

cudaError_t group_pair_positions(const int32_t* experts, const int32_t* offsets,
                                 const int32_t* expert_group, int n, int C, int32_t* pair_pos,
                                 cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  group_pair_positions_kernel<<<(n + 255) / 256, 256, 0, stream>>>(experts, offsets, expert_group,
                                                                   n, C, pair_pos);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
