#include "backend/cuda/moe_routing.cuh"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace mixserve::cuda {

cudaError_t moe_topk(const float* logits, int T, int E, int K, int32_t* experts, float* weights,
                     cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  if (E <= 0 || E > kMoeMaxExperts || K <= 0 || K > E) return cudaErrorInvalidValue;
  moe_topk_kernel<<<(T + 127) / 128, 128, 0, stream>>>(logits, T, E, K, experts, weights);
  return cudaGetLastError();
}

bool moe_routing_tiled() {
  static const bool tiled = [] {
    const char* env = std::getenv("MIXSERVE_MOE_SORT");
    return env == nullptr || std::strcmp(env, "block") != 0;
  }();
  return tiled;
}

cudaError_t moe_sort(const int32_t* experts, int T, int K, int E, int32_t* counts, int32_t* offsets,
                     int32_t* sorted_token, int32_t* pair_pos, cudaStream_t stream,
                     MoeSortKernel kernel) {
  if (E <= 0 || E > kMoeMaxExperts || K <= 0 || T < 0) return cudaErrorInvalidValue;
  const int N = T * K;
  const bool tiled = kernel == MoeSortKernel::kDefault ? moe_routing_tiled()
                                                       : kernel == MoeSortKernel::kTiled;
  if (tiled) {
    const int blocks = std::max(1, (N + kSortTile - 1) / kSortTile);
    moe_sort_tiled_kernel<<<blocks, kSortTile, 0, stream>>>(experts, N, E, counts, offsets,
                                                            sorted_token, pair_pos, K);
  } else {
    moe_sort_kernel<<<1, kSortThreads, 0, stream>>>(experts, N, E, counts, offsets, sorted_token,
                                                    pair_pos, K);
  }
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
