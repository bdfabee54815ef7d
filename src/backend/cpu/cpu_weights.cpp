#include "backend/cpu/cpu_weights.h"

#include <cmath>
#include <string>

#include "model/weight_names.h"
#include "util/error.h"

namespace mixserve {
namespace {

namespace wn = weight_names;

void check_size(const std::vector<float>& t, size_t expected, const std::string& name) {
  MIXSERVE_CHECK(t.size() == expected, "CPU weights: ", name, " has ", t.size(),
                 " values, the config needs ", expected);
}

// splitmix64: tiny, and the same sequence everywhere (std distributions are not portable).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1), 24 bits of mantissa.
  float symmetric() { return static_cast<float>(next() >> 40) * (2.0f / 16777216.0f) - 1.0f; }

 private:
  uint64_t state_;
};

std::vector<float> uniform(Rng& rng, size_t n, float scale, float center = 0.0f) {
  std::vector<float> v(n);
  for (float& x : v) x = center + scale * rng.symmetric();
  return v;
}

}  // namespace

int cpu_num_experts(const ModelConfig& c) { return c.moe ? c.num_local_experts : 1; }

void check_cpu_weights(const ModelConfig& c, const CpuWeights& w, int expert_begin,
                       int num_experts_held, bool has_lm_head) {
  const size_t V = c.vocab_size, H = c.hidden_size, F = c.intermediate_size;
  const size_t q = size_t(c.num_attention_heads) * c.head_dim;
  const size_t kv = size_t(c.num_key_value_heads) * c.head_dim;
  const size_t E = num_experts_held >= 0 ? num_experts_held : cpu_num_experts(c);
  check_size(w.embed, V * H, wn::embed());
  MIXSERVE_CHECK(w.layers.size() == size_t(c.num_hidden_layers), "CPU weights: ",
                 w.layers.size(), " layers, the config needs ", c.num_hidden_layers);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const CpuLayerWeights& lw = w.layers[l];
    check_size(lw.attn_norm, H, wn::attn_norm(l));
    check_size(lw.wq, q * H, wn::q_proj(l));
    check_size(lw.wk, kv * H, wn::k_proj(l));
    check_size(lw.wv, kv * H, wn::v_proj(l));
    check_size(lw.wo, H * q, wn::o_proj(l));
    check_size(lw.ffn_norm, H, wn::ffn_norm(l));
    if (c.moe) check_size(lw.router, size_t(c.num_local_experts) * H, wn::router(l));
    MIXSERVE_CHECK(lw.experts.size() == E, "CPU weights: layer ", l, " has ", lw.experts.size(),
                   " experts, the config needs ", E);
    for (size_t e = 0; e < E; ++e) {
      check_size(lw.experts[e].w1, F * H, wn::expert_gate(c, l, expert_begin + int(e)));
      check_size(lw.experts[e].w3, F * H, wn::expert_up(c, l, expert_begin + int(e)));
      check_size(lw.experts[e].w2, H * F, wn::expert_down(c, l, expert_begin + int(e)));
    }
  }
  check_size(w.final_norm, H, wn::final_norm());
  check_size(w.lm_head, has_lm_head ? V * H : 0, wn::lm_head());
}

CpuWeights make_random_cpu_weights(const ModelConfig& c, uint64_t seed) {
  const size_t V = c.vocab_size, H = c.hidden_size, F = c.intermediate_size;
  const size_t q = size_t(c.num_attention_heads) * c.head_dim;
  const size_t kv = size_t(c.num_key_value_heads) * c.head_dim;
  const float sh = 1.0f / std::sqrt(float(H)), sq = 1.0f / std::sqrt(float(q));
  const float sf = 1.0f / std::sqrt(float(F));
  Rng rng(seed);
  CpuWeights w;
  w.embed = uniform(rng, V * H, 1.0f);
  w.layers.resize(c.num_hidden_layers);
  for (CpuLayerWeights& lw : w.layers) {
    lw.attn_norm = uniform(rng, H, 0.1f, 1.0f);
    lw.wq = uniform(rng, q * H, sh);
    lw.wk = uniform(rng, kv * H, sh);
    lw.wv = uniform(rng, kv * H, sh);
    lw.wo = uniform(rng, H * q, sq);
    lw.ffn_norm = uniform(rng, H, 0.1f, 1.0f);
    if (c.moe) lw.router = uniform(rng, size_t(c.num_local_experts) * H, sh);
    lw.experts.resize(cpu_num_experts(c));
    for (CpuExpertWeights& ew : lw.experts) {
      ew.w1 = uniform(rng, F * H, sh);
      ew.w3 = uniform(rng, F * H, sh);
      ew.w2 = uniform(rng, H * F, sf);
    }
  }
  w.final_norm = uniform(rng, H, 0.1f, 1.0f);
  w.lm_head = c.tie_word_embeddings ? w.embed : uniform(rng, V * H, sh);
  return w;
}

}  // namespace mixserve
