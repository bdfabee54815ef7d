// CpuWeights: every tensor of a Mixtral-family model as float32, for the CPU reference backend.
//
// Shapes (row-major, nn.Linear's [out, in]): V = vocab, H = hidden, Hq / Hkv = query / KV heads,
// D = head dim, E = experts (1 for dense models), F = expert intermediate size.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace mixserve {

class Checkpoint;

struct CpuExpertWeights {
  std::vector<float> w1;  // [F, H] gate projection (dense: mlp.gate_proj)
  std::vector<float> w3;  // [F, H] up projection   (dense: mlp.up_proj)
  std::vector<float> w2;  // [H, F] down projection (dense: mlp.down_proj)
};

struct CpuLayerWeights {
  std::vector<float> attn_norm;  // [H] input_layernorm
  std::vector<float> wq;         // [Hq*D, H]
  std::vector<float> wk;         // [Hkv*D, H]
  std::vector<float> wv;         // [Hkv*D, H]
  std::vector<float> wo;         // [H, Hq*D]
  std::vector<float> ffn_norm;   // [H] post_attention_layernorm
  std::vector<float> router;     // [E, H] block_sparse_moe.gate; empty for dense models
  std::vector<CpuExpertWeights> experts;  // [E]; dense models: exactly one
};

struct CpuWeights {
  std::vector<float> embed;       // [V, H]
  std::vector<CpuLayerWeights> layers;  // [L]
  std::vector<float> final_norm;  // [H]
  std::vector<float> lm_head;     // [V, H] (a copy of embed when the embeddings are tied)
};

// Experts the weights hold: num_local_experts for MoE models, 1 for dense ones.
int cpu_num_experts(const ModelConfig& config);

// Throws mixserve::Error naming the first tensor (by its Hugging Face name) whose size does not
// match the config. Shards (cpu_shard.h) pass the experts they hold per layer (expert
// parallelism: [expert_begin, expert_begin + num_experts_held); -1 = all of cpu_num_experts)
// and whether they hold the lm_head.
void check_cpu_weights(const ModelConfig& config, const CpuWeights& weights,
                       int expert_begin = 0, int num_experts_held = -1, bool has_lm_head = true);

// Random weights of the config's shape, the same for the same seed on every platform: linear
// weights uniform in ±1/sqrt(in), norms 1 ± 0.1, embeddings uniform in ±1. For tests and
// synthetic models.
CpuWeights make_random_cpu_weights(const ModelConfig& config, uint64_t seed);

// Reads every tensor of the checkpoint (any stored dtype) into float32; shapes are checked by
// Checkpoint::get, whose errors name the file and the tensor.
CpuWeights load_cpu_weights(const ModelConfig& config, const Checkpoint& checkpoint);

// One layer of the checkpoint, with experts [expert_begin, expert_begin + num_experts) only
// (all of them: 0, cpu_num_experts). The router is always whole.
CpuLayerWeights load_cpu_layer(const ModelConfig& config, const Checkpoint& checkpoint, int layer,
                               int expert_begin, int num_experts);

}  // namespace mixserve
