// Helpers for the CPU backend tests: small awkward configs, a naive reference forward pass
// written independently of the backend (contiguous K/V, full causal softmax, double sums), and
// a builder of BatchPlans over shuffled, non-contiguous KV blocks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/batch_plan.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_weights.h"
#include "model/config.h"

namespace mixserve::cpu_test {

// Mixtral-shaped: V=97, H=48, heads 6/2 (GQA 3), D=8, E=4 top-2, F=40, L=2.
inline ModelConfig moe_config() {
  ModelConfig c;
  c.model_type = "mixtral";
  c.moe = true;
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.num_local_experts = 4;
  c.num_experts_per_tok = 2;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 1e6;
  return c;
}

// Mistral-shaped dense model with plain multi-head attention (Hq == Hkv, group size 1),
// head_dim != H / Hq, tied embeddings.
inline ModelConfig dense_config() {
  ModelConfig c;
  c.model_type = "mistral";
  c.moe = false;
  c.vocab_size = 61;
  c.hidden_size = 36;
  c.intermediate_size = 52;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 12;
  c.num_local_experts = 1;
  c.num_experts_per_tok = 1;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = true;
  return c;
}

// MoE with one KV head for all query heads (multi-query), 5 experts top-3, D=6.
inline ModelConfig mqa_config() {
  ModelConfig c = moe_config();
  c.vocab_size = 53;
  c.hidden_size = 20;
  c.intermediate_size = 28;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 1;
  c.head_dim = 6;
  c.num_local_experts = 5;
  c.num_experts_per_tok = 3;
  return c;
}

// ---- naive reference ---------------------------------------------------------------------------

using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

// y = W x for W stored [out, in] as floats.  x: [in] -> [out]
inline std::vector<double> matvec(const std::vector<float>& w, const std::vector<double>& x,
                                  int out) {
  const size_t in = x.size();
  std::vector<double> y(out, 0.0);
  for (int o = 0; o < out; ++o) {
    for (size_t i = 0; i < in; ++i) y[o] += double(w[o * in + i]) * x[i];
  }
  return y;
}

inline std::vector<double> rms(const std::vector<double>& x, const std::vector<float>& w,
                               float eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / double(x.size()) + double(eps));
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = double(w[i]) * (x[i] * inv);
  return y;
}

// Rotates a [heads * D] vector in place; the angle in float32 as transformers computes it.
inline void rope(std::vector<double>& x, int D, int pos, double theta) {
  const int heads = int(x.size()) / D;
  for (int i = 0; i < D / 2; ++i) {
    const float inv = 1.0f / std::pow(float(theta), float(2 * i) / float(D));
    const float angle = float(pos) * inv;
    const double c = std::cos(double(angle)), s = std::sin(double(angle));
    for (int h = 0; h < heads; ++h) {
      const double a = x[h * D + i], b = x[h * D + i + D / 2];
      x[h * D + i] = a * c - b * s;
      x[h * D + i + D / 2] = b * c + a * s;
    }
  }
}

inline std::vector<double> mlp(const CpuExpertWeights& e, const std::vector<double>& x, int F) {
  std::vector<double> g = matvec(e.w1, x, F), u = matvec(e.w3, x, F);
  for (int i = 0; i < F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return matvec(e.w2, g, int(x.size()));
}

// Logits [T][V] of every position of `tokens` (one sequence, positions 0..T-1).
inline Matrix naive_logits(const ModelConfig& c, const CpuWeights& w,
                           const std::vector<int>& tokens) {
  const int T = int(tokens.size()), H = c.hidden_size, D = c.head_dim;
  const int Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  Matrix x(T, std::vector<double>(H));
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < H; ++i) x[t][i] = w.embed[size_t(tokens[t]) * H + i];
  }
  for (const CpuLayerWeights& lw : w.layers) {
    Matrix q(T), k(T), v(T);
    for (int t = 0; t < T; ++t) {
      const std::vector<double> h = rms(x[t], lw.attn_norm, c.rms_norm_eps);
      q[t] = matvec(lw.wq, h, Hq * D);
      k[t] = matvec(lw.wk, h, Hkv * D);
      v[t] = matvec(lw.wv, h, Hkv * D);
      rope(q[t], D, t, c.rope_theta);
      rope(k[t], D, t, c.rope_theta);
    }
    for (int t = 0; t < T; ++t) {
      std::vector<double> att(Hq * D, 0.0);
      for (int h = 0; h < Hq; ++h) {
        const int kvh = h / (Hq / Hkv);
        std::vector<double> score(T, -INFINITY);
        double mx = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          if (c.sliding_window > 0 && j <= t - c.sliding_window) continue;
          double s = 0;
          for (int d = 0; d < D; ++d) s += q[t][h * D + d] * k[j][kvh * D + d];
          score[j] = s / std::sqrt(double(D));
          mx = std::max(mx, score[j]);
        }
        double sum = 0;
        for (int j = 0; j <= t; ++j) sum += std::exp(score[j] - mx);
        for (int j = 0; j <= t; ++j) {
          const double p = std::exp(score[j] - mx) / sum;
          for (int d = 0; d < D; ++d) att[h * D + d] += p * v[j][kvh * D + d];
        }
      }
      const std::vector<double> o = matvec(lw.wo, att, H);
      for (int i = 0; i < H; ++i) x[t][i] += o[i];
    }
    for (int t = 0; t < T; ++t) {
      const std::vector<double> h = rms(x[t], lw.ffn_norm, c.rms_norm_eps);
      std::vector<double> ff(H, 0.0);
      if (!c.moe) {
        ff = mlp(lw.experts[0], h, c.intermediate_size);
      } else {
        const int E = c.num_local_experts, K = c.num_experts_per_tok;
        std::vector<double> p = matvec(lw.router, h, E);
        const double mx = *std::max_element(p.begin(), p.end());
        double sum = 0;
        for (double& z : p) sum += (z = std::exp(z - mx));
        for (double& z : p) z /= sum;
        std::vector<int> idx(E);
        for (int e = 0; e < E; ++e) idx[e] = e;
        std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return p[a] > p[b]; });
        double top = 0;
        for (int i = 0; i < K; ++i) top += p[idx[i]];
        for (int i = 0; i < K; ++i) {
          const std::vector<double> y = mlp(lw.experts[idx[i]], h, c.intermediate_size);
          for (int j = 0; j < H; ++j) ff[j] += y[j] * (p[idx[i]] / top);
        }
      }
      for (int i = 0; i < H; ++i) x[t][i] += ff[i];
    }
  }
  Matrix logits(T);
  for (int t = 0; t < T; ++t) {
    logits[t] = matvec(w.lm_head, rms(x[t], w.final_norm, c.rms_norm_eps), c.vocab_size);
  }
  return logits;
}

// max |a - b| / max(1, |b|) over a row.
inline double max_rel_error(std::span<const float> a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - b[i]) / std::max(1.0, std::abs(b[i])));
  }
  return worst;
}

// ---- plans over a shuffled block pool ----------------------------------------------------------

struct TestSequence {
  std::vector<int> tokens;  // the whole sequence
  int computed = 0;         // tokens whose KV is cached
  std::vector<int> blocks;  // physical blocks, in logical order
};

class PlanBuilder {
 public:
  PlanBuilder(int block_size, int num_blocks, uint64_t seed) : block_size_(block_size) {
    for (int b = 0; b < num_blocks; ++b) free_.push_back(b);
    std::mt19937_64 rng(seed);
    std::shuffle(free_.begin(), free_.end(), rng);
  }

  int add(std::vector<int> tokens) {
    seqs_.push_back({std::move(tokens), 0, {}});
    return int(seqs_.size()) - 1;
  }
  const TestSequence& seq(int s) const { return seqs_[s]; }

  // One step: for each (sequence, n) compute its next n tokens. Logits for every new token
  // when all_logits, else for the last token of each sequence. Advances the sequences.
  BatchPlan step(const std::vector<std::pair<int, int>>& work, bool all_logits,
                 int extra_table_columns = 0) {
    BatchPlan p;
    p.seq_offsets.push_back(0);
    int max_blocks = 0;
    for (auto [s, n] : work) {
      TestSequence& q = seqs_[s];
      const int ctx = q.computed + n;
      while (int(q.blocks.size()) * block_size_ < ctx) {
        q.blocks.push_back(free_.back());
        free_.pop_back();
      }
      max_blocks = std::max(max_blocks, int(q.blocks.size()));
    }
    p.max_blocks_per_seq = max_blocks + extra_table_columns;
    for (auto [s, n] : work) {
      TestSequence& q = seqs_[s];
      for (int i = 0; i < n; ++i) {
        const int pos = q.computed + i;
        if (all_logits || i == n - 1) p.logits_rows.push_back(p.num_tokens());
        p.token_ids.push_back(q.tokens[pos]);
        p.positions.push_back(pos);
        p.slot_mapping.push_back(int64_t{q.blocks[pos / block_size_]} * block_size_ +
                                 pos % block_size_);
      }
      q.computed += n;
      p.seq_offsets.push_back(p.num_tokens());
      p.context_lens.push_back(q.computed);
      for (int b = 0; b < p.max_blocks_per_seq; ++b) {
        p.block_tables.push_back(b < int(q.blocks.size()) ? q.blocks[b] : -1);
      }
    }
    return p;
  }

 private:
  int block_size_;
  std::vector<int> free_;
  std::vector<TestSequence> seqs_;
};

inline std::vector<float> run(CpuBackend& backend, const BatchPlan& plan) {
  std::vector<float> logits(plan.logits_rows.size() * size_t(backend.config().vocab_size));
  backend.forward(plan, logits);
  return logits;
}

inline std::vector<int> random_tokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> t(n);
  for (int& x : t) x = int(rng() % uint64_t(vocab));
  return t;
}

}  // namespace mixserve::cpu_test
