// One rank's part of the CPU reference under tensor / expert parallelism (dist/sharding.h):
// which slices of the weights it holds, and the communicator its partial sums go through.
//
// Shapes (full model): H = hidden, Hq / Hkv = query / KV heads, D = head dim, F = expert
// intermediate size, E = experts. A shard holds wq / wk / wv rows of its heads, wo columns of
// its query heads, w1 / w3 rows and w2 columns [ffn_begin, ffn_begin + ffn_size) of each of its
// experts (all E under TP, its range under EP), and the router, norms and embedding whole.
// Only rank 0 holds the lm_head and computes logits (only rank 0's are read).
#pragma once

#include "backend/cpu/cpu_weights.h"
#include "dist/communicator.h"
#include "dist/sharding.h"

namespace mixserve {

class Checkpoint;

struct CpuShard {
  dist::ShardSpec spec;
  dist::Communicator* comm = nullptr;  // not owned; spec.size ranks, this one spec.rank
};

inline bool cpu_shard_has_lm_head(const dist::ShardSpec& s) { return s.rank == 0; }

// Cuts one full layer to the shard. `layer` holds the experts the shard keeps (under EP
// already only [expert_begin, expert_begin + num_experts)), each with full F.
CpuLayerWeights slice_cpu_layer(const ModelConfig& full, CpuLayerWeights layer,
                                const dist::ShardSpec& s);

// The shard of in-memory weights of the whole model (tests, synthetic weights).
CpuWeights slice_cpu_weights(const ModelConfig& full, const CpuWeights& weights,
                             const dist::ShardSpec& s);

// Reads only what the shard needs from a checkpoint, one layer at a time
// (cpu_weights_load.cpp).
CpuWeights load_cpu_shard_weights(const ModelConfig& full, const Checkpoint& checkpoint,
                                  const dist::ShardSpec& s);

}  // namespace mixserve
