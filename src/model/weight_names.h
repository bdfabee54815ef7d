// The tensors a Mixtral-family checkpoint must hold, with their shapes, by Hugging Face name.
//
// Shapes (row-major, [out, in] for linear layers as nn.Linear stores them):
//   model.embed_tokens.weight                               [V, H]
//   model.layers.{l}.input_layernorm.weight                 [H]
//   model.layers.{l}.self_attn.q_proj.weight                [Hq*D, H]
//   model.layers.{l}.self_attn.k_proj.weight                [Hkv*D, H]
//   model.layers.{l}.self_attn.v_proj.weight                [Hkv*D, H]
//   model.layers.{l}.self_attn.o_proj.weight                [H, Hq*D]
//   model.layers.{l}.post_attention_layernorm.weight        [H]
//   MoE:   model.layers.{l}.block_sparse_moe.gate.weight    [E, H]
//          model.layers.{l}.block_sparse_moe.experts.{e}.w1.weight  [F, H]   (gate)
//          model.layers.{l}.block_sparse_moe.experts.{e}.w3.weight  [F, H]   (up)
//          model.layers.{l}.block_sparse_moe.experts.{e}.w2.weight  [H, F]   (down)
//   dense: model.layers.{l}.mlp.gate_proj.weight            [F, H]
//          model.layers.{l}.mlp.up_proj.weight              [F, H]
//          model.layers.{l}.mlp.down_proj.weight            [H, F]
//   model.norm.weight                                       [H]
//   lm_head.weight                                          [V, H]   (absent when tied)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace mixserve {

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};

namespace weight_names {
std::string embed();
std::string final_norm();
std::string lm_head();
std::string attn_norm(int layer);
std::string ffn_norm(int layer);
std::string q_proj(int layer);
std::string k_proj(int layer);
std::string v_proj(int layer);
std::string o_proj(int layer);
std::string router(int layer);                // MoE only
// Expert e's gate (w1), up (w3) and down (w2) projections; for dense models (e == 0) the
// mlp.gate_proj / up_proj / down_proj names.
std::string expert_gate(const ModelConfig& c, int layer, int expert);
std::string expert_up(const ModelConfig& c, int layer, int expert);
std::string expert_down(const ModelConfig& c, int layer, int expert);
}  // namespace weight_names

// Every tensor the model needs, in a stable order (embedding, layers, norm, lm_head).
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

}  // namespace mixserve
