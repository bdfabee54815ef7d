// Paged causal attention of the CPU reference (transformers' eager attention, float32).
//
// Shapes: T = tokens of the step, Hq / Hkv = query / KV heads, D = head dim,
//         N = KV slots of the cache (num_blocks * block_size).
// One layer's cache is two pools, K and V, each [N, Hkv, D]; slot = block * block_size + offset.
#pragma once

#include "backend/batch_plan.h"

namespace mixserve::cpu {

struct AttentionShape {
  int num_heads = 0;       // Hq
  int num_kv_heads = 0;    // Hkv; query head h reads KV head h / (Hq / Hkv)
  int head_dim = 0;        // D
  int block_size = 0;      // tokens per KV block
  int sliding_window = 0;  // > 0: position p sees only positions > p - sliding_window
};

// Stores k, v ([T, Hkv, D], k already rotated) at plan.slot_mapping in k_cache / v_cache.
void write_kv(const BatchPlan& plan, const AttentionShape& shape, const float* k, const float* v,
              float* k_cache, float* v_cache);

// out[t, h] = sum_j softmax_j(q[t, h] . K[j] * D^-0.5) V[j] over the positions j of token t's
// sequence with j <= positions[t] (and inside the sliding window), read through its block
// table. q, out: [T, Hq, D]. Softmax in float32 with the maximum subtracted; the probabilities
// are normalised before they weight V, as in transformers' eager path.
void paged_attention(const BatchPlan& plan, const AttentionShape& shape, const float* q,
                     const float* k_cache, const float* v_cache, float* out, int num_threads);

}  // namespace mixserve::cpu
