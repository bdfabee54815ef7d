// How one rank's shard of the model is cut (tensor parallelism, optionally expert parallelism
// for the MoE layers), as index ranges into the full model's tensors.
//
// Tensor parallel (TP) over N ranks, as in Megatron-LM: rank r holds query heads
// [r*Hq/N, (r+1)*Hq/N) and the KV heads they use; wq/wk/wv are cut by output rows (heads), wo by
// input columns, so each rank's o-projection is a partial sum that an all-reduce completes.
// Each expert's w1/w3 are cut by output rows [r*F/N, (r+1)*F/N) and w2 by the same input
// columns: the FFN output is again a partial sum. With fewer KV heads than ranks (N % Hkv == 0)
// each KV head is held (replicated) by the N/Hkv ranks whose query heads use it.
// Expert parallel (EP, --expert-parallel) over the same N ranks: attention as in TP; rank r
// holds whole experts [r*E/N, (r+1)*E/N) and computes only the (token, expert) pairs routed to
// them; the all-reduce of the FFN output adds the other ranks' experts. The router, the norms,
// the embedding and the lm_head are replicated.
#pragma once

#include "model/config.h"

namespace mixserve::dist {

struct ParallelConfig {
  int tensor_parallel = 1;       // ranks N that share one copy of the model
  bool expert_parallel = false;  // MoE layers: whole experts per rank instead of FFN slices
};

struct ShardSpec {
  int rank = 0, size = 1;
  bool expert_parallel = false;
  int q_head_begin = 0, num_q_heads = 0;    // of the model's Hq query heads
  int kv_head_begin = 0, num_kv_heads = 0;  // of the model's Hkv KV heads
  int ffn_begin = 0, ffn_size = 0;          // of each expert's F (TP); 0, F under EP
  int expert_begin = 0, num_experts = 0;    // experts held (EP); 0, E (or 1 dense) under TP

  // The config this rank's backend computes with: num_attention_heads, num_key_value_heads and
  // intermediate_size replaced by the local counts; head_dim set explicitly; everything else
  // (hidden size, vocab, num_local_experts for the router) unchanged.
  ModelConfig local_config(const ModelConfig& full) const;
};

// Throws mixserve::Error naming the sizes that do not divide (Hq % N, Hkv vs N, F % N, or
// E % N under EP) or a rank outside [0, N).
ShardSpec make_shard(const ModelConfig& config, const ParallelConfig& parallel, int rank);

}  // namespace mixserve::dist
