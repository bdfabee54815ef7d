// For the CUDA end-to-end tests: the CPU reference forward pass again (the same cpu:: ops as
// CpuBackend::forward), recording for every token the smallest gap, over the layers, between
// the K-th and (K+1)-th largest router logits. A token with a gap below the bf16 error of the
// router logits may be sent to another expert on the GPU than on the CPU: a legitimate,
// discrete difference (not a kernel error) that also reaches later tokens of its sequence
// through the KV cache.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <vector>

#include "backend/batch_plan.h"
#include "backend/cpu/cpu_attention.h"
#include "backend/cpu/cpu_moe.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cpu/cpu_weights.h"
#include "cuda_test_support.h"
#include "model/config.h"
#include "model/loader.h"

namespace mixserve::cuda_test {

class RouterGapReference {
 public:
  RouterGapReference(const ModelConfig& c, CpuWeights w, int block_size, int num_blocks)
      : c_(c),
        w_(std::move(w)),
        block_size_(block_size),
        pool_(size_t(num_blocks) * block_size * c.num_key_value_heads * c.head_dim),
        kv_(size_t(c.num_hidden_layers) * 2 * pool_),
        inv_freq_(cpu::rope_inv_freq(c.head_dim, c.rope_theta)) {}

  // The reference of a checkpoint folder (its weights read again for the CPU).
  static RouterGapReference for_model(const std::filesystem::path& dir, int block_size,
                                      int num_blocks) {
    ModelFiles files = open_model_dir(dir);
    return RouterGapReference(files.config, load_cpu_weights(files.config, *files.checkpoint),
                              block_size, num_blocks);
  }

  // The smallest gap of the step's tokens (a greedy path's step: run() and take the minimum).
  float min_gap(const BatchPlan& plan) {
    const std::vector<float> g = run(plan);
    return g.empty() ? INFINITY : *std::min_element(g.begin(), g.end());
  }

  // gaps: [T] smallest K-th vs (K+1)-th router logit gap over the layers (+inf when dense).
  std::vector<float> run(const BatchPlan& plan) {
    const int T = plan.num_tokens(), H = c_.hidden_size, Hq = c_.num_attention_heads;
    const int Hkv = c_.num_key_value_heads, D = c_.head_dim, E = c_.num_local_experts;
    const int K = c_.num_experts_per_tok;
    const cpu::AttentionShape shape{Hq, Hkv, D, block_size_, c_.sliding_window};
    std::vector<float> x(size_t(T) * H), h(x.size()), delta(x.size());
    std::vector<float> q(size_t(T) * Hq * D), k(size_t(T) * Hkv * D), v(k.size()), attn(q.size());
    std::vector<float> gaps(T, INFINITY), logits(size_t(T) * E);
    for (int t = 0; t < T; ++t) {
      std::copy_n(w_.embed.data() + size_t(plan.token_ids[t]) * H, H, x.data() + size_t(t) * H);
    }
    for (int l = 0; l < c_.num_hidden_layers; ++l) {
      const CpuLayerWeights& lw = w_.layers[l];
      float* kp = kv_.data() + size_t(2 * l) * pool_;
      float* vp = kp + pool_;
      cpu::rms_norm(x.data(), T, H, lw.attn_norm.data(), c_.rms_norm_eps, h.data());
      cpu::linear(h.data(), T, lw.wq.data(), H, Hq * D, q.data(), 1);
      cpu::linear(h.data(), T, lw.wk.data(), H, Hkv * D, k.data(), 1);
      cpu::linear(h.data(), T, lw.wv.data(), H, Hkv * D, v.data(), 1);
      for (int t = 0; t < T; ++t) {
        cpu::apply_rope(q.data() + size_t(t) * Hq * D, Hq, D, plan.positions[t], inv_freq_.data());
        cpu::apply_rope(k.data() + size_t(t) * Hkv * D, Hkv, D, plan.positions[t],
                        inv_freq_.data());
      }
      cpu::write_kv(plan, shape, k.data(), v.data(), kp, vp);
      cpu::paged_attention(plan, shape, q.data(), kp, vp, attn.data(), 1);
      cpu::linear(attn.data(), T, lw.wo.data(), Hq * D, H, delta.data(), 1);
      for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
      cpu::rms_norm(x.data(), T, H, lw.ffn_norm.data(), c_.rms_norm_eps, h.data());
      if (c_.moe && K < E) {
        cpu::linear(h.data(), T, lw.router.data(), H, E, logits.data(), 1);
        for (int t = 0; t < T; ++t) {
          std::vector<float> lt(logits.begin() + size_t(t) * E, logits.begin() + size_t(t + 1) * E);
          std::sort(lt.begin(), lt.end(), std::greater<float>());
          gaps[t] = std::min(gaps[t], lt[K - 1] - lt[K]);
        }
      }
      cpu::feed_forward(h.data(), T, c_, lw, delta.data(), 1);
      for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
    }
    return gaps;
  }

 private:
  ModelConfig c_;
  CpuWeights w_;
  int block_size_;
  size_t pool_;
  std::vector<float> kv_;
  std::vector<float> inv_freq_;
};

// One step's logits rows [T, V] against the reference's, split at each sequence's first
// router near-tie: rows at or after it (the same sequence, through the KV cache) may differ
// by a flipped expert; the others only by rounding.
struct RowErrors {
  double worst_clean = 0, worst_tie = 0;  // largest relative L2 error of a row
  int tie_rows = 0;
};
// tie_pos[s]: the first position of sequence s that saw a router near-tie so far (INT_MAX:
// none yet), carried from step to step and updated from this step's gaps.
inline RowErrors row_errors(const BatchPlan& plan, const std::vector<float>& gaps,
                            const std::vector<float>& got, const std::vector<float>& ref, int V,
                            std::vector<int>& tie_pos) {
  RowErrors r;
  for (int s = 0; s < plan.num_seqs(); ++s) {
    for (int t = plan.seq_offsets[s]; t < plan.seq_offsets[s + 1]; ++t) {
      if (gaps[t] < kRouterTieGap) tie_pos[s] = std::min(tie_pos[s], plan.positions[t]);
    }
    for (int t = plan.seq_offsets[s]; t < plan.seq_offsets[s + 1]; ++t) {
      const std::vector<float> g(got.begin() + size_t(t) * V, got.begin() + size_t(t + 1) * V);
      const std::vector<float> e(ref.begin() + size_t(t) * V, ref.begin() + size_t(t + 1) * V);
      const double err = rel_l2(g, e);
      if (plan.positions[t] >= tie_pos[s]) {
        ++r.tie_rows;
        r.worst_tie = std::max(r.worst_tie, err);
      } else {
        r.worst_clean = std::max(r.worst_clean, err);
      }
    }
  }
  return r;
}

}  // namespace mixserve::cuda_test
