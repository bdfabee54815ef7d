#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>

#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_moe.h"
#include "backend/cpu/cpu_ops.h"
#include "util/error.h"

namespace mixserve {
namespace {

void check_config(const ModelConfig& c) {
  MIXSERVE_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.intermediate_size > 0 &&
                     c.num_hidden_layers > 0,
                 "CPU backend: vocab_size, hidden_size, intermediate_size and num_hidden_layers "
                 "must be positive");
  MIXSERVE_CHECK(c.num_attention_heads > 0 && c.num_key_value_heads > 0 &&
                     c.num_attention_heads % c.num_key_value_heads == 0,
                 "CPU backend: num_attention_heads (", c.num_attention_heads,
                 ") must be a positive multiple of num_key_value_heads (", c.num_key_value_heads,
                 ")");
  MIXSERVE_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "CPU backend: head_dim (", c.head_dim,
                 ") must be positive and even for the rotary embedding");
  if (c.moe) {
    MIXSERVE_CHECK(c.num_local_experts > 0 && c.num_experts_per_tok > 0 &&
                       c.num_experts_per_tok <= c.num_local_experts,
                   "CPU backend: num_experts_per_tok (", c.num_experts_per_tok,
                   ") must be between 1 and num_local_experts (", c.num_local_experts, ")");
  }
}

}  // namespace

CpuBackend::CpuBackend(const ModelConfig& config, CpuWeights weights, int num_threads,
                       std::optional<CpuShard> shard)
    : config_(shard ? shard->spec.local_config(config) : config),
      shard_(std::move(shard)),
      weights_(std::move(weights)) {
  check_config(config_);
  if (shard_) {
    const dist::ShardSpec& s = shard_->spec;
    MIXSERVE_CHECK(shard_->comm != nullptr && shard_->comm->size() == s.size &&
                       shard_->comm->rank() == s.rank,
                   "CPU backend: the shard of rank ", s.rank, " of ", s.size,
                   " needs a communicator of that rank and size");
    check_cpu_weights(config_, weights_, s.expert_begin, s.num_experts, computes_logits());
  } else {
    check_cpu_weights(config_, weights_);
  }
  MIXSERVE_CHECK(num_threads >= 0, "CPU backend: num_threads must be >= 0 (0 = all cores)");
  num_threads_ = num_threads > 0 ? num_threads : std::max(1, omp_get_max_threads());
  inv_freq_ = cpu::rope_inv_freq(config_.head_dim, config_.rope_theta);
}

size_t CpuBackend::kv_bytes_per_token() const {
  return size_t(config_.num_hidden_layers) * 2 * config_.num_key_value_heads * config_.head_dim *
         sizeof(float);
}

void CpuBackend::allocate_kv_cache(const KvCacheSpec& spec) {
  MIXSERVE_CHECK(spec.num_blocks > 0 && spec.block_size > 0, "CPU backend: KV cache needs "
                 "num_blocks > 0 and block_size > 0 (got ", spec.num_blocks, " and ",
                 spec.block_size, ")");
  kv_cache_.clear();
  kv_cache_.shrink_to_fit();
  kv_cache_.resize(size_t(spec.num_blocks) * spec.block_size * kv_bytes_per_token() /
                   sizeof(float));
  kv_spec_ = spec;
}

void CpuBackend::reduce_partial(std::vector<float>& partial) {
  if (shard_) shard_->comm->all_reduce_sum(partial.data(), partial.size());
}

float* CpuBackend::kv_pool(int layer, int which) {
  const size_t pool = size_t(kv_spec_.num_blocks) * kv_spec_.block_size *
                      config_.num_key_value_heads * config_.head_dim;
  return kv_cache_.data() + (size_t(layer) * 2 + which) * pool;
}

void CpuBackend::forward(const BatchPlan& plan, std::span<float> logits_out) {
  const ModelConfig& c = config_;
  MIXSERVE_CHECK(!kv_cache_.empty(), "CPU backend: forward() before allocate_kv_cache()");
  plan.validate(kv_spec_.block_size, kv_spec_.num_blocks);
  const int T = plan.num_tokens(), H = c.hidden_size, V = c.vocab_size;
  const int R = static_cast<int>(plan.logits_rows.size());
  MIXSERVE_CHECK(!computes_logits() || logits_out.size() >= size_t(R) * V,
                 "CPU backend: logits buffer holds ", logits_out.size(),
                 " floats, the plan needs ", size_t(R) * V);
  const int Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const int nt = num_threads_;
  const cpu::AttentionShape shape{Hq, Hkv, D, kv_spec_.block_size, c.sliding_window};

  // Residual stream x and scratch, all [T, width].
  std::vector<float> x(size_t(T) * H), normed(size_t(T) * H), delta(size_t(T) * H);
  std::vector<float> q(size_t(T) * Hq * D), k(size_t(T) * Hkv * D), v(size_t(T) * Hkv * D);
  std::vector<float> attn(size_t(T) * Hq * D);
  for (int t = 0; t < T; ++t) {
    const int id = plan.token_ids[t];
    MIXSERVE_CHECK(id >= 0 && id < V, "CPU backend: token id ", id, " outside the vocabulary [0, ",
                   V, ")");
    std::copy_n(weights_.embed.data() + size_t(id) * H, H, x.data() + size_t(t) * H);
  }

  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const CpuLayerWeights& lw = weights_.layers[l];
    cpu::rms_norm(x.data(), T, H, lw.attn_norm.data(), c.rms_norm_eps, normed.data());
    cpu::linear(normed.data(), T, lw.wq.data(), H, Hq * D, q.data(), nt);
    cpu::linear(normed.data(), T, lw.wk.data(), H, Hkv * D, k.data(), nt);
    cpu::linear(normed.data(), T, lw.wv.data(), H, Hkv * D, v.data(), nt);
    for (int t = 0; t < T; ++t) {
      cpu::apply_rope(q.data() + size_t(t) * Hq * D, Hq, D, plan.positions[t], inv_freq_.data());
      cpu::apply_rope(k.data() + size_t(t) * Hkv * D, Hkv, D, plan.positions[t], inv_freq_.data());
    }
    float* k_pool = kv_pool(l, 0);
    float* v_pool = kv_pool(l, 1);
    cpu::write_kv(plan, shape, k.data(), v.data(), k_pool, v_pool);
    cpu::paged_attention(plan, shape, q.data(), k_pool, v_pool, attn.data(), nt);
    cpu::linear(attn.data(), T, lw.wo.data(), Hq * D, H, delta.data(), nt);
    reduce_partial(delta);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];

    cpu::rms_norm(x.data(), T, H, lw.ffn_norm.data(), c.rms_norm_eps, normed.data());
    cpu::feed_forward(normed.data(), T, c, lw, delta.data(), nt,
                      shard_ ? shard_->spec.expert_begin : 0);
    reduce_partial(delta);
    for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
  }

  if (!computes_logits()) return;
  // Only the rows whose logits are wanted go through the final norm and the lm_head.
  std::vector<float> rows(size_t(R) * H), rows_normed(size_t(R) * H);
  for (int r = 0; r < R; ++r) {
    std::copy_n(x.data() + size_t(plan.logits_rows[r]) * H, H, rows.data() + size_t(r) * H);
  }
  cpu::rms_norm(rows.data(), R, H, weights_.final_norm.data(), c.rms_norm_eps,
                rows_normed.data());
  cpu::linear(rows_normed.data(), R, weights_.lm_head.data(), H, V, logits_out.data(), nt);
}

}  // namespace mixserve
