#include "model/presets.h"

#include <charconv>
#include <functional>
#include <map>

#include "util/error.h"

namespace mixserve {
namespace {

// L = layers, H = hidden, Hq/Hkv = heads, D = head_dim, E = experts, k = top-k, F = FFN size.
ModelConfig shape(const char* type, int L, int H, int Hq, int Hkv, int D, int E, int k, int F,
                  int V, int max_pos) {
  ModelConfig c;
  c.model_type = type;
  c.moe = c.model_type == "mixtral";
  c.num_hidden_layers = L;
  c.hidden_size = H;
  c.num_attention_heads = Hq;
  c.num_key_value_heads = Hkv;
  c.head_dim = D;
  c.num_local_experts = E;
  c.num_experts_per_tok = k;
  c.intermediate_size = F;
  c.vocab_size = V;
  c.max_position_embeddings = max_pos;
  c.rope_theta = 1e6;
  c.rms_norm_eps = 1e-5f;
  c.sliding_window = 0;
  c.tie_word_embeddings = false;
  c.dtype = "bfloat16";
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

struct Preset {
  const char* name;
  ModelConfig config;
};

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      //                      type      L   H     Hq  Hkv D    E  k  F      V      max_pos
      {"tiny", shape("mixtral", 2, 128, 4, 1, 32, 4, 2, 256, 32000, 4096)},
      {"tiny-e8", shape("mixtral", 2, 128, 8, 4, 16, 8, 2, 192, 32000, 4096)},
      {"tiny-d128", shape("mixtral", 2, 256, 4, 2, 128, 8, 2, 256, 32000, 4096)},
      {"tiny-dense", shape("mistral", 2, 128, 4, 2, 32, 1, 1, 384, 32000, 4096)},
      {"mixtral-8x7b", shape("mixtral", 32, 4096, 32, 8, 128, 8, 2, 14336, 32000, 32768)},
      {"mixtral-8x22b", shape("mixtral", 56, 6144, 48, 8, 128, 8, 2, 16384, 32768, 65536)},
      {"mistral-7b", shape("mistral", 32, 4096, 32, 8, 128, 1, 1, 14336, 32000, 32768)},
  };
  return all;
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const std::string& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const Preset& p : presets()) out.push_back(p.name);
  return out;
}

ModelConfig preset_config(const std::string& name) {
  for (const Preset& p : presets()) {
    if (name == p.name) return p.config;
  }
  throw_error("unknown model preset \"", name, "\" (valid: ", joined(preset_names()), ")");
}

ModelConfig preset_from_spec(const std::string& spec) {
  const size_t q = spec.find('?');
  ModelConfig c = preset_config(spec.substr(0, q));
  if (q == std::string::npos) return c;

  const std::map<std::string, std::function<void(int)>> setters = {
      {"layers", [&](int v) { c.num_hidden_layers = v; }},
      {"experts",
       [&](int v) {
         if (!c.moe) throw_error("synthetic:", spec, ": experts applies to MoE presets only");
         c.num_local_experts = v;
       }},
      {"top_k",
       [&](int v) {
         if (!c.moe) throw_error("synthetic:", spec, ": top_k applies to MoE presets only");
         c.num_experts_per_tok = v;
       }},
      {"hidden", [&](int v) { c.hidden_size = v; }},
      {"heads", [&](int v) { c.num_attention_heads = v; }},
      {"kv_heads", [&](int v) { c.num_key_value_heads = v; }},
      {"head_dim", [&](int v) { c.head_dim = v; }},
      {"intermediate", [&](int v) { c.intermediate_size = v; }},
      {"vocab", [&](int v) { c.vocab_size = v; }},
      {"max_pos", [&](int v) { c.max_position_embeddings = v; }},
  };
  std::string rest = spec.substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string item = rest.substr(0, amp);
    rest = amp == std::string::npos ? "" : rest.substr(amp + 1);
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const auto it = setters.find(key);
    if (it == setters.end()) {
      std::vector<std::string> keys;
      for (const auto& [k, s] : setters) keys.push_back(k);
      throw_error("synthetic:", spec, ": unknown key \"", key, "\" (valid: ", joined(keys), ")");
    }
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    int v = 0;
    const auto res = std::from_chars(value.data(), value.data() + value.size(), v);
    if (value.empty() || res.ec != std::errc() || res.ptr != value.data() + value.size()) {
      throw_error("synthetic:", spec, ": ", key, " needs an integer value (got \"", value, "\")");
    }
    it->second(v);
  }
  // Same checks as a config.json (positive sizes, GQA divisibility, top-k <= experts).
  return ModelConfig::from_json_text(c.to_json_text(), "synthetic:" + spec);
}

}  // namespace mixserve
