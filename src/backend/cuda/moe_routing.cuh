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

// The single-block sort below took 84 us a layer at 16,384 pairs and 170 us at 32,768 on an
// H100/H200 (~1.4% of a prefill step; docs/perf/NOTES.md session 12): its 4 * E block barriers a
// chunk of 1,024 pairs serialize it. This one spreads the pairs over blocks of kSortTile (one
// pair a thread) and needs no barrier inside the pair loops nor a second launch: every block
// counts all N pairs (the totals give the expert offsets, the pairs before its tile its start
// within each expert: N int32 reads a block, from L2 after the first), then ranks its tile's
// pairs with warp match masks (rank = earlier lanes of the same expert in the warp + that
// expert's pairs in earlier warps). Stable: the order within an expert is the pair order.
// Grid: max(1, ceil(N / kSortTile)) blocks of kSortTile threads; block 0 writes counts and
// offsets. experts[i] must be in [0, E).
constexpr int kSortTile = 1024;

__global__ void __launch_bounds__(kSortTile)
    moe_sort_tiled_kernel(const int32_t* experts, int N, int E, int32_t* counts,
                          int32_t* offsets, int32_t* sorted_token, int32_t* pair_pos, int K) {
  constexpr int kWarps = kSortTile / 32, kUnroll = 4;
  __shared__ int total_s[kMoeMaxExperts], before_s[kMoeMaxExperts], base_s[kMoeMaxExperts];
  __shared__ int warp_s[kWarps][kMoeMaxExperts];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int tile0 = blockIdx.x * kSortTile;
  for (int e = tid; e < E; e += kSortTile) total_s[e] = before_s[e] = 0;
  for (int i = tid; i < kWarps * kMoeMaxExperts; i += kSortTile) (&warp_s[0][0])[i] = 0;
  __syncthreads();
  // Every pair: a warp takes 32 consecutive ones a step, so a step lies wholly before or from
  // tile0 (a multiple of 32). The loads of kUnroll steps go out before their match masks.
  for (int i0 = warp * 32; i0 < N; i0 += kUnroll * kSortTile) {
    int e[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = i0 + u * kSortTile + lane;
      e[u] = i < N ? __ldg(experts + i) : -1;
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int s0 = i0 + u * kSortTile;  // warp-uniform
      if (s0 >= N) break;
      const unsigned peers = __match_any_sync(0xffffffffu, e[u]);
      if (e[u] >= 0 && lane == __ffs(peers) - 1) {
        atomicAdd(&total_s[e[u]], __popc(peers));
        if (s0 < tile0) atomicAdd(&before_s[e[u]], __popc(peers));
      }
    }
  }
  // This block's pairs, one a thread: rank among the same expert's earlier lanes.
  const int i = tile0 + tid;
  const int my = i < N ? __ldg(experts + i) : -1;
  const unsigned peers = __match_any_sync(0xffffffffu, my);
  const int rank = __popc(peers & ((1u << lane) - 1u));
  if (my >= 0 && lane == __ffs(peers) - 1) warp_s[warp][my] = __popc(peers);
  __syncthreads();
  if (tid == 0) {
    int running = 0;
    for (int e = 0; e < E; ++e) {
      base_s[e] = running + before_s[e];
      if (blockIdx.x == 0) {
        counts[e] = total_s[e];
        offsets[e] = running;
      }
      running += total_s[e];
    }
    if (blockIdx.x == 0) offsets[E] = running;
  }
  if (tid < E) {  // exclusive scan of expert tid's per-warp counts
    int running = 0;
    for (int w = 0; w < kWarps; ++w) {
      const int v = warp_s[w][tid];
      warp_s[w][tid] = running;
      running += v;
    }
  }
  __syncthreads();
  if (my >= 0) {
    const int pos = base_s[my] + warp_s[warp][my] + rank;
    sorted_token[pos] = i / K;
    pair_pos[i] = pos;
  }
}

// The single block of kSortThreads (sessions 1-11; MIXSERVE_MOE_SORT=block, for comparisons).
// Pass 1 counts pairs per expert (integer atomics: exact), pass 2 gives each pair its rank
// among the earlier pairs of its expert with warp ballots and a scan of the warp totals, chunk
// by chunk, so the order within an expert is the pair order.
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
