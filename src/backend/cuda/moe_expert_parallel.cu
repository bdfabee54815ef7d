#include "backend/cuda/moe_expert_parallel.cuh"

namespace mixserve::cuda {

cudaError_t moe_localize_experts(int32_t* experts, int n, int begin, int El,
                                 cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  moe_localize_experts_kernel<<<(n + 255) / 256, 256, 0, stream>>>(experts, n, begin, El);
  return cudaGetLastError();
}

cudaError_t moe_combine_local(const float* y, const int32_t* experts, const float* weights,
                              const int32_t* pair_pos, int T, int K, int H, int El, float* out,
                              cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  if (K <= 0 || K > kEpMaxTopK) return cudaErrorInvalidValue;
  moe_combine_local_kernel<<<T, 256, 0, stream>>>(y, experts, weights, pair_pos, K, H, El, out);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
