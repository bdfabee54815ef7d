// Checkpoint -> CpuWeights (the whole model, or one rank's shard). Kept apart from
// cpu_weights.cpp so that code building weights in memory does not depend on the safetensors
// reader.
#include <string>

#include "backend/cpu/cpu_shard.h"
#include "backend/cpu/cpu_weights.h"
#include "model/fp8_quant.h"
#include "model/safetensors.h"
#include "model/weight_names.h"

namespace mixserve {
namespace {

namespace wn = weight_names;

std::vector<float> read(const Checkpoint& ckpt, const std::string& name,
                        std::vector<int64_t> shape) {
  // FP8 checkpoints: E4M3 weights dequantized with their scales (the CPU computes in fp32).
  return tensor_to_float(ckpt, ckpt.get(name, shape));
}

}  // namespace

CpuLayerWeights load_cpu_layer(const ModelConfig& c, const Checkpoint& ckpt, int l,
                               int expert_begin, int num_experts) {
  const int64_t H = c.hidden_size, F = c.intermediate_size;
  const int64_t q = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv = int64_t{c.num_key_value_heads} * c.head_dim;
  CpuLayerWeights lw;
  lw.attn_norm = read(ckpt, wn::attn_norm(l), {H});
  lw.wq = read(ckpt, wn::q_proj(l), {q, H});
  lw.wk = read(ckpt, wn::k_proj(l), {kv, H});
  lw.wv = read(ckpt, wn::v_proj(l), {kv, H});
  lw.wo = read(ckpt, wn::o_proj(l), {H, q});
  lw.ffn_norm = read(ckpt, wn::ffn_norm(l), {H});
  if (c.moe) lw.router = read(ckpt, wn::router(l), {c.num_local_experts, H});
  lw.experts.resize(num_experts);
  for (int i = 0; i < num_experts; ++i) {
    const int e = expert_begin + i;
    lw.experts[i].w1 = read(ckpt, wn::expert_gate(c, l, e), {F, H});
    lw.experts[i].w3 = read(ckpt, wn::expert_up(c, l, e), {F, H});
    lw.experts[i].w2 = read(ckpt, wn::expert_down(c, l, e), {H, F});
  }
  return lw;
}

CpuWeights load_cpu_weights(const ModelConfig& c, const Checkpoint& ckpt) {
  const int64_t V = c.vocab_size, H = c.hidden_size;
  CpuWeights w;
  w.embed = read(ckpt, wn::embed(), {V, H});
  w.layers.resize(c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    w.layers[l] = load_cpu_layer(c, ckpt, l, 0, cpu_num_experts(c));
  }
  w.final_norm = read(ckpt, wn::final_norm(), {H});
  // Tied models (tie_word_embeddings) reuse the embedding as the output projection.
  w.lm_head = c.tie_word_embeddings ? w.embed : read(ckpt, wn::lm_head(), {V, H});
  return w;
}

CpuWeights load_cpu_shard_weights(const ModelConfig& c, const Checkpoint& ckpt,
                                  const dist::ShardSpec& s) {
  const int64_t V = c.vocab_size, H = c.hidden_size;
  CpuWeights w;
  w.embed = read(ckpt, wn::embed(), {V, H});
  w.layers.resize(c.num_hidden_layers);
  // One full layer at a time in memory, cut at once: the peak is one layer, not the model.
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    w.layers[l] = slice_cpu_layer(c, load_cpu_layer(c, ckpt, l, s.expert_begin, s.num_experts), s);
  }
  w.final_norm = read(ckpt, wn::final_norm(), {H});
  if (cpu_shard_has_lm_head(s)) {
    w.lm_head = c.tie_word_embeddings ? w.embed : read(ckpt, wn::lm_head(), {V, H});
  }
  return w;
}

}  // namespace mixserve
