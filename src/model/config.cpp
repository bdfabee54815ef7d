// config.json parsing and writing. The only place that knows the JSON keys of a Hugging Face
// Mixtral / Mistral / Llama config, classic (transformers 4) and transformers-5 spellings alike.
#include "model/config.h"

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/error.h"

namespace mixserve {
namespace {

using nlohmann::json;

// Reads typed fields from one JSON object; every error names the source file and the key.
class Fields {
 public:
  Fields(const json& j, const std::string& source) : j_(j), source_(source) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw_error(source_, ": ", key, " ", what);
  }

  int get_int(const char* key, const char* hint = "") const {
    if (!has(key)) fail(key, std::string("missing") + hint);
    return as_int(j_.at(key), key);
  }
  int get_int_or(const char* key, int fallback) const {
    return has(key) ? as_int(j_.at(key), key) : fallback;
  }
  int get_positive(const char* key, const char* hint = "") const {
    const int v = get_int(key, hint);
    if (v <= 0) fail(key, "must be positive (got " + std::to_string(v) + ")");
    return v;
  }
  double get_number_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) fail(key, "must be a number (got " + std::string(v.type_name()) + ")");
    return v.get<double>();
  }
  bool get_bool_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) fail(key, "must be true or false (got " + std::string(v.type_name()) + ")");
    return v.get<bool>();
  }
  std::string get_string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) fail(key, "must be a string (got " + std::string(v.type_name()) + ")");
    return v.get<std::string>();
  }

  int as_int(const json& v, const std::string& key) const {
    if (!v.is_number_integer()) {
      fail(key, "must be an integer (got " + std::string(v.type_name()) + " " + v.dump() + ")");
    }
    const int64_t x = v.get<int64_t>();
    if (x < INT32_MIN || x > INT32_MAX) fail(key, "is out of range (" + v.dump() + ")");
    return static_cast<int>(x);
  }

 private:
  const json& j_;
  const std::string& source_;
};

// Only plain RoPE is implemented; scaled variants (linear, dynamic, yarn, llama3, ...) change
// the frequencies and would silently produce wrong outputs.
void check_rope_kind(const json& rope, const char* key, const std::string& source) {
  if (rope.is_null()) return;
  if (!rope.is_object()) throw_error(source, ": ", key, " must be an object or null");
  for (const char* kind_key : {"rope_type", "type"}) {
    if (!rope.contains(kind_key)) continue;
    const json& kind = rope.at(kind_key);
    if (!kind.is_string() || kind.get<std::string>() != "default") {
      throw_error(source, ": ", key, ".", kind_key, " = ", kind.dump(),
                  " is not supported (only plain RoPE, rope_type \"default\", is implemented)");
    }
  }
  if (std::string(key) == "rope_scaling" && !rope.contains("rope_type") && !rope.contains("type")) {
    throw_error(source, ": ", key, " has no rope_type; only plain RoPE is supported");
  }
}

// A float printed with the fewest digits that read back to it (1e-05, not 9.99999974e-06).
double shortest_double(float f) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof(buf), f);
  *res.ptr = '\0';
  return std::strtod(buf, nullptr);
}

}  // namespace

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& source) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw_error(source, ": not valid JSON");
  if (!j.is_object()) throw_error(source, ": expected a JSON object at the top level");
  const Fields f(j, source);

  ModelConfig c;
  c.model_type = f.get_string_or("model_type", "");
  if (c.model_type.empty()) {
    f.fail("model_type", "missing (expected \"mixtral\", \"mistral\" or \"llama\")");
  }
  if (c.model_type == "mixtral") {
    c.moe = true;
  } else if (c.model_type == "mistral" || c.model_type == "llama") {
    c.moe = false;
  } else {
    f.fail("model_type", "\"" + c.model_type +
                             "\" is not supported (expected \"mixtral\", \"mistral\" or \"llama\")");
  }

  c.vocab_size = f.get_positive("vocab_size");
  c.hidden_size = f.get_positive("hidden_size");
  c.intermediate_size = f.get_positive("intermediate_size");
  c.num_hidden_layers = f.get_positive("num_hidden_layers");
  c.num_attention_heads = f.get_positive("num_attention_heads");
  c.num_key_value_heads = f.has("num_key_value_heads") ? f.get_positive("num_key_value_heads")
                                                       : c.num_attention_heads;
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    f.fail("num_attention_heads", "(" + std::to_string(c.num_attention_heads) +
                                      ") must be a multiple of num_key_value_heads (" +
                                      std::to_string(c.num_key_value_heads) + ")");
  }
  if (f.has("head_dim")) {
    c.head_dim = f.get_positive("head_dim");
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      f.fail("hidden_size", "(" + std::to_string(c.hidden_size) +
                                ") must be a multiple of num_attention_heads (" +
                                std::to_string(c.num_attention_heads) +
                                ") when head_dim is not given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0) f.fail("head_dim", "must be even for RoPE");

  if (c.moe) {
    c.num_local_experts = f.get_positive("num_local_experts", " (is this a Mixtral checkpoint?)");
    c.num_experts_per_tok =
        f.get_positive("num_experts_per_tok", " (is this a Mixtral checkpoint?)");
    if (c.num_experts_per_tok > c.num_local_experts) {
      f.fail("num_experts_per_tok", "(" + std::to_string(c.num_experts_per_tok) +
                                        ") exceeds num_local_experts (" +
                                        std::to_string(c.num_local_experts) + ")");
    }
  } else {
    c.num_local_experts = 1;
    c.num_experts_per_tok = 1;
  }

  const bool is_llama = c.model_type == "llama";
  c.rms_norm_eps = static_cast<float>(f.get_number_or("rms_norm_eps", is_llama ? 1e-6 : 1e-5));
  if (!(c.rms_norm_eps > 0)) f.fail("rms_norm_eps", "must be positive");

  // rope_theta: top level (classic) or rope_parameters.rope_theta (transformers 5).
  c.rope_theta = c.moe ? 1e6 : 1e4;
  if (f.has("rope_parameters")) {
    const json& rp = j.at("rope_parameters");
    check_rope_kind(rp, "rope_parameters", source);
    if (rp.contains("rope_theta")) {
      if (!rp.at("rope_theta").is_number()) f.fail("rope_parameters.rope_theta", "must be a number");
      c.rope_theta = rp.at("rope_theta").get<double>();
    }
  }
  c.rope_theta = f.get_number_or("rope_theta", c.rope_theta);
  if (!(c.rope_theta > 0)) f.fail("rope_theta", "must be positive");
  if (j.contains("rope_scaling")) check_rope_kind(j.at("rope_scaling"), "rope_scaling", source);

  c.max_position_embeddings = f.get_int_or("max_position_embeddings", is_llama ? 2048 : 131072);
  if (c.max_position_embeddings <= 0) f.fail("max_position_embeddings", "must be positive");
  c.sliding_window = f.get_int_or("sliding_window", 0);
  if (c.sliding_window < 0) f.fail("sliding_window", "must be positive or null");
  c.tie_word_embeddings = f.get_bool_or("tie_word_embeddings", false);

  if (f.get_string_or("hidden_act", "silu") != "silu") {
    f.fail("hidden_act", "\"" + j.at("hidden_act").get<std::string>() +
                             "\" is not supported (only \"silu\")");
  }
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    if (f.get_bool_or(bias, false)) f.fail(bias, "= true is not supported (no bias terms)");
  }

  // dtype (transformers 5) wins over torch_dtype (classic); float32 is transformers' default.
  c.dtype = f.get_string_or("dtype", f.get_string_or("torch_dtype", "float32"));
  if (c.dtype != "bfloat16" && c.dtype != "float16" && c.dtype != "float32") {
    f.fail(f.has("dtype") ? "dtype" : "torch_dtype",
           "\"" + c.dtype + "\" is not supported (bfloat16, float16 or float32)");
  }

  c.bos_token_id = f.get_int_or("bos_token_id", 1);
  if (f.has("eos_token_id")) {
    const json& eos = j.at("eos_token_id");
    if (eos.is_array()) {
      for (const json& e : eos) c.eos_token_ids.push_back(f.as_int(e, "eos_token_id"));
    } else {
      c.eos_token_ids.push_back(f.as_int(eos, "eos_token_id"));
    }
  } else {
    c.eos_token_ids.push_back(2);
  }

  if (f.has("quantization_config")) {
    const json& q = j.at("quantization_config");
    if (!q.is_object()) f.fail("quantization_config", "must be an object");
    const Fields qf(q, source);
    const std::string method = qf.get_string_or("quant_method", "");
    if (method != "fp8") {
      f.fail("quantization_config.quant_method",
             "\"" + method + "\" is not supported (only \"fp8\" checkpoints)");
    }
    if (qf.has("weight_block_size")) {
      f.fail("quantization_config.weight_block_size",
             "is set: block-wise FP8 is not supported (per-channel or per-tensor scales only)");
    }
    c.fp8 = true;
    c.fp8_activation_scheme = qf.get_string_or("activation_scheme", "dynamic");
    if (c.fp8_activation_scheme != "dynamic" && c.fp8_activation_scheme != "static") {
      f.fail("quantization_config.activation_scheme",
             "\"" + c.fp8_activation_scheme + "\" is not supported (dynamic or static)");
    }
  }
  return c;
}

ModelConfig ModelConfig::from_file(const std::filesystem::path& config_json) {
  std::ifstream in(config_json, std::ios::binary);
  if (!in) throw_error(config_json.string(), ": cannot open (is this a model folder?)");
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_json_text(ss.str(), config_json.string());
}

std::string ModelConfig::to_json_text() const {
  nlohmann::ordered_json j;
  const char* arch = model_type == "mixtral"   ? "MixtralForCausalLM"
                     : model_type == "mistral" ? "MistralForCausalLM"
                                               : "LlamaForCausalLM";
  j["architectures"] = {arch};
  j["model_type"] = model_type;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else {
    j["eos_token_id"] = eos_token_ids;
  }
  j["head_dim"] = head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = intermediate_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["num_attention_heads"] = num_attention_heads;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_key_value_heads"] = num_key_value_heads;
  if (moe) {
    j["num_experts_per_tok"] = num_experts_per_tok;
    j["num_local_experts"] = num_local_experts;
    j["output_router_logits"] = false;
    j["router_aux_loss_coef"] = 0.02;
    j["router_jitter_noise"] = 0.0;
  }
  if (model_type == "llama") {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
    j["rope_scaling"] = nullptr;
  }
  j["rms_norm_eps"] = shortest_double(rms_norm_eps);
  j["rope_theta"] = rope_theta;
  if (model_type != "llama") {
    j["sliding_window"] = sliding_window > 0 ? nlohmann::ordered_json(sliding_window) : nullptr;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = dtype.empty() ? "bfloat16" : dtype;
  j["use_cache"] = true;
  j["vocab_size"] = vocab_size;
  if (fp8) {
    j["quantization_config"] = {
        {"quant_method", "fp8"},
        {"activation_scheme", fp8_activation_scheme.empty() ? "dynamic" : fp8_activation_scheme}};
  }
  return j.dump(2) + "\n";
}

}  // namespace mixserve
