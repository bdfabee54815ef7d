// ModelConfig: the shape of a Mixtral-family model, from a Hugging Face config.json.
//
// Accepts the classic keys (rope_theta, torch_dtype) and the ones transformers 5 writes
// (rope_parameters.rope_theta, dtype, head_dim: null). Mistral / Llama configs are the dense
// (one-expert) case, with mlp.gate_proj/up_proj/down_proj weights.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mixserve {

struct ModelConfig {
  std::string model_type;        // "mixtral", "mistral" or "llama"
  bool moe = true;               // block_sparse_moe layout (Mixtral) vs dense mlp (Mistral/Llama)
  int vocab_size = 0;            // V
  int hidden_size = 0;           // H
  int intermediate_size = 0;     // F, per expert
  int num_hidden_layers = 0;     // L
  int num_attention_heads = 0;   // Hq
  int num_key_value_heads = 0;   // Hkv (GQA: Hq % Hkv == 0)
  int head_dim = 0;              // D (default H / Hq)
  int num_local_experts = 1;     // E
  int num_experts_per_tok = 1;   // top-k
  float rms_norm_eps = 1e-5f;
  double rope_theta = 1e6;
  int max_position_embeddings = 0;
  int sliding_window = 0;        // 0 = none
  bool tie_word_embeddings = false;
  std::string dtype;             // "bfloat16", "float16", "float32" as written in the file
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;

  // FP8 checkpoints (quantization_config.quant_method == "fp8").
  bool fp8 = false;
  std::string fp8_activation_scheme;  // "dynamic" or "static"

  // Parses and validates; errors name the field and the file.
  static ModelConfig from_json_text(const std::string& text, const std::string& source_name);
  static ModelConfig from_file(const std::filesystem::path& config_json);
  // Writes a config.json in the classic Mixtral / Mistral form.
  std::string to_json_text() const;
};

}  // namespace mixserve
