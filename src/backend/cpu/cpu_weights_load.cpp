// Checkpoint -> CpuWeights. Kept apart from cpu_weights.cpp so that code building weights in
// memory does not depend on the safetensors reader.
#include <string>

#include "backend/cpu/cpu_weights.h"
#include "model/fp8_quant.h"
#include "model/safetensors.h"
#include "model/weight_names.h"

namespace mixserve {
namespace {

std::vector<float> read(const Checkpoint& ckpt, const std::string& name,
                        std::vector<int64_t> shape) {
  // FP8 checkpoints: E4M3 weights dequantized with their scales (the CPU computes in fp32).
  return tensor_to_float(ckpt, ckpt.get(name, shape));
}

}  // namespace

CpuWeights load_cpu_weights(const ModelConfig& c, const Checkpoint& ckpt) {
  namespace wn = weight_names;
  const int64_t V = c.vocab_size, H = c.hidden_size, F = c.intermediate_size;
  const int64_t q = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv = int64_t{c.num_key_value_heads} * c.head_dim;
  CpuWeights w;
  w.embed = read(ckpt, wn::embed(), {V, H});
  w.layers.resize(c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    CpuLayerWeights& lw = w.layers[l];
    lw.attn_norm = read(ckpt, wn::attn_norm(l), {H});
    lw.wq = read(ckpt, wn::q_proj(l), {q, H});
    lw.wk = read(ckpt, wn::k_proj(l), {kv, H});
    lw.wv = read(ckpt, wn::v_proj(l), {kv, H});
    lw.wo = read(ckpt, wn::o_proj(l), {H, q});
    lw.ffn_norm = read(ckpt, wn::ffn_norm(l), {H});
    if (c.moe) lw.router = read(ckpt, wn::router(l), {c.num_local_experts, H});
    lw.experts.resize(cpu_num_experts(c));
    for (int e = 0; e < cpu_num_experts(c); ++e) {
      lw.experts[e].w1 = read(ckpt, wn::expert_gate(c, l, e), {F, H});
      lw.experts[e].w3 = read(ckpt, wn::expert_up(c, l, e), {F, H});
      lw.experts[e].w2 = read(ckpt, wn::expert_down(c, l, e), {H, F});
    }
  }
  w.final_norm = read(ckpt, wn::final_norm(), {H});
  // Tied models (tie_word_embeddings) reuse the embedding as the output projection.
  w.lm_head = c.tie_word_embeddings ? w.embed : read(ckpt, wn::lm_head(), {V, H});
  return w;
}

}  // namespace mixserve
