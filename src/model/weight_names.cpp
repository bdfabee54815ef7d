#include "model/weight_names.h"

namespace mixserve {
namespace weight_names {
namespace {
std::string layer_prefix(int l) { return "model.layers." + std::to_string(l) + "."; }
std::string expert_prefix(int l, int e) {
  return layer_prefix(l) + "block_sparse_moe.experts." + std::to_string(e) + ".";
}
}  // namespace

std::string embed() { return "model.embed_tokens.weight"; }
std::string final_norm() { return "model.norm.weight"; }
std::string lm_head() { return "lm_head.weight"; }
std::string attn_norm(int l) { return layer_prefix(l) + "input_layernorm.weight"; }
std::string ffn_norm(int l) { return layer_prefix(l) + "post_attention_layernorm.weight"; }
std::string q_proj(int l) { return layer_prefix(l) + "self_attn.q_proj.weight"; }
std::string k_proj(int l) { return layer_prefix(l) + "self_attn.k_proj.weight"; }
std::string v_proj(int l) { return layer_prefix(l) + "self_attn.v_proj.weight"; }
std::string o_proj(int l) { return layer_prefix(l) + "self_attn.o_proj.weight"; }
std::string router(int l) { return layer_prefix(l) + "block_sparse_moe.gate.weight"; }

std::string expert_gate(const ModelConfig& c, int l, int e) {
  return c.moe ? expert_prefix(l, e) + "w1.weight" : layer_prefix(l) + "mlp.gate_proj.weight";
}
std::string expert_up(const ModelConfig& c, int l, int e) {
  return c.moe ? expert_prefix(l, e) + "w3.weight" : layer_prefix(l) + "mlp.up_proj.weight";
}
std::string expert_down(const ModelConfig& c, int l, int e) {
  return c.moe ? expert_prefix(l, e) + "w2.weight" : layer_prefix(l) + "mlp.down_proj.weight";
}
}  // namespace weight_names

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  namespace wn = weight_names;
  const int64_t V = c.vocab_size, H = c.hidden_size, F = c.intermediate_size;
  const int64_t q = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv = int64_t{c.num_key_value_heads} * c.head_dim;
  std::vector<ExpectedTensor> out;
  out.push_back({wn::embed(), {V, H}});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    out.push_back({wn::attn_norm(l), {H}});
    out.push_back({wn::q_proj(l), {q, H}});
    out.push_back({wn::k_proj(l), {kv, H}});
    out.push_back({wn::v_proj(l), {kv, H}});
    out.push_back({wn::o_proj(l), {H, q}});
    out.push_back({wn::ffn_norm(l), {H}});
    const int experts = c.moe ? c.num_local_experts : 1;
    if (c.moe) out.push_back({wn::router(l), {c.num_local_experts, H}});
    for (int e = 0; e < experts; ++e) {
      out.push_back({wn::expert_gate(c, l, e), {F, H}});
      out.push_back({wn::expert_up(c, l, e), {F, H}});
      out.push_back({wn::expert_down(c, l, e), {H, F}});
    }
  }
  out.push_back({wn::final_norm(), {H}});
  if (!c.tie_word_embeddings) out.push_back({wn::lm_head(), {V, H}});
  return out;
}

}  // namespace mixserve
