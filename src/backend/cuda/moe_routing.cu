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

cudaError_t moe_sort(const int32_t* experts, int T, int K, int E, int32_t* counts, int32_t* offsets,
                     int32_t* sorted_token, int32_t* pair_pos, cudaStream_t stream) {
  if (E <= 0 || E > kMoeMaxExperts || K <= 0 || T < 0) return cudaErrorInvalidValue;
  // MIXSERVE_MOE_SORT=block: the single-block sort of sessions 1-11, for comparisons.
  static const bool single_block = [] {
    const char* env = std::getenv("MIXSERVE_MOE_SORT");
    return env != nullptr && std::strcmp(env, "block") == 0;
  }();
  const int N = T * K;
  if (single_block) {
    moe_sort_kernel<<<1, kSortThreads, 0, stream>>>(experts, N, E, counts, offsets, sorted_token,
                                                    pair_pos, K);
  } else {
    const int blocks = std::max(1, (N + kSortTile - 1) / kSortTile);
    moe_sort_tiled_kernel<<<blocks, kSortTile, 0, stream>>>(experts, N, E, counts, offsets,
                                                            sorted_token, pair_pos, K);
  }
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
