// MoE routing: softmax + top-k + renormalisation per token, and a stable counting sort of the
// (token, slot) pairs by expert so that each expert's rows are contiguous for its GEMMs.
#pragma once

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

constexpr int kMoeMaxExperts = 64;

// One thread per token.  logits: [T, E]; experts, weights: [T, K]
// Same arithmetic order as the CPU reference: probabilities normalised over all E experts,
// the K largest picked in descending order (strict >, so ties go to the lower index), divided
// by their sum accumulated in pick order.
__global__ void moe_topk_kernel(const float* logits, int T, int E, int K, int32_t* experts,
                                float* weights) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= T) return;
  const float* l = logits + static_cast<int64_t>(t) * E;
  float max_logit = l[0];
  for (int e = 1; e < E; ++e) max_logit = fmaxf(max_logit, l[e]);
  float sum = 0.0f;
  for (int e = 0; e < E; ++e) sum += expf(l[e] - max_logit);
  uint64_t chosen = 0;
  float top_sum = 0.0f;
  for (int k = 0; k < K; ++k) {
    int best = -1;
    float best_p = 0.0f;
    for (int e = 0; e < E; ++e) {
      if (chosen >> e & 1) continue;
      const float pe = expf(l[e] - max_logit) / sum;
      if (best < 0 || pe > best_p) {
        best = e;
        best_p = pe;
      }
    }
    chosen |= uint64_t{1} << best;
    experts[t * K + k] = best;
    weights[t * K + k] = best_p;
    top_sum += best_p;
  }
  for (int k = 0; k < K; ++k) weights[t * K + k] /= top_sum;
}

constexpr int kSortThreads = 1024;

// One block of kSortThreads. Pass 1 counts pairs per expert (integer atomics: exact), pass 2
// gives each pair its rank among the earlier pairs of its expert with warp ballots and a scan
// of the warp totals, chunk by chunk, so the order within an expert is the pair order.
__global__ void moe_sort_kernel(const int32_t* experts, int N, int E, int32_t* counts,
                                int32_t* offsets, int32_t* sorted_token, int32_t* pair_pos, int K) {
  __shared__ int count_s[kMoeMaxExperts];
  __shared__ int base_s[kMoeMaxExperts];
  __shared__ int warp_prefix[kSortThreads / 32];
  __shared__ int chunk_total;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  for (int e = tid; e < E; e += blockDim.x) count_s[e] = 0;
  __syncthreads();
  for (int i = tid; i < N; i += blockDim.x) atomicAdd(&count_s[experts[i]], 1);
  __syncthreads();
  if (tid == 0) {
    int running = 0;
    for (int e = 0; e < E; ++e) {
      counts[e] = count_s[e];
      offsets[e] = running;
      base_s[e] = running;
      running += count_s[e];
    }
    offsets[E] = running;
  }
  __syncthreads();
  for (int chunk = 0; chunk < N; chunk += kSortThreads) {
    const int i = chunk + tid;
    const int my_expert = i < N ? experts[i] : -1;
    for (int e = 0; e < E; ++e) {
      const bool mine = my_expert == e;
      const unsigned ballot = __ballot_sync(0xffffffffu, mine);
      const int rank = __popc(ballot & ((1u << lane) - 1u));
      if (lane == 0) warp_prefix[warp] = __popc(ballot);
      __syncthreads();
      if (warp == 0) {  // exclusive scan of the 32 warp totals
        const int v = warp_prefix[lane];
        int incl = v;
        for (int o = 1; o < 32; o <<= 1) {
          const int up = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += up;
        }
        warp_prefix[lane] = incl - v;
        if (lane == 31) chunk_total = incl;
      }
      __syncthreads();
      if (mine) {
        const int pos = base_s[e] + warp_prefix[warp] + rank;
        sorted_token[pos] = i / K;
        pair_pos[i] = pos;
      }
      __syncthreads();
      if (tid == 0) base_s[e] += chunk_total;
      __syncthreads();
    }
  }
}

}  // namespace mixserve::cuda
