#include "backend/cpu/cpu_shard.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "util/error.h"

namespace mixserve {
namespace {

// Rows [begin, begin + n) of a row-major [rows, cols] matrix.
std::vector<float> take_rows(const std::vector<float>& w, size_t cols, size_t begin, size_t n) {
  MIXSERVE_CHECK((begin + n) * cols <= w.size(), "CPU shard: rows [", begin, ", ", begin + n,
                 ") outside a tensor of ", w.size() / std::max<size_t>(cols, 1), " rows");
  return std::vector<float>(w.begin() + begin * cols, w.begin() + (begin + n) * cols);
}

// Columns [begin, begin + n) of a row-major [rows, cols] matrix: [rows, n].
std::vector<float> take_cols(const std::vector<float>& w, size_t cols, size_t begin, size_t n) {
  MIXSERVE_CHECK(begin + n <= cols && w.size() % cols == 0, "CPU shard: columns [", begin, ", ",
                 begin + n, ") outside a tensor of ", cols, " columns");
  const size_t rows = w.size() / cols;
  std::vector<float> out(rows * n);
  for (size_t r = 0; r < rows; ++r) {
    std::copy_n(w.begin() + r * cols + begin, n, out.begin() + r * n);
  }
  return out;
}

}  // namespace

CpuLayerWeights slice_cpu_layer(const ModelConfig& c, CpuLayerWeights lw,
                                const dist::ShardSpec& s) {
  const size_t H = c.hidden_size, D = c.head_dim, F = c.intermediate_size;
  const size_t q_cols = size_t(c.num_attention_heads) * D;
  MIXSERVE_CHECK(lw.experts.size() == size_t(s.num_experts), "CPU shard: a layer with ",
                 lw.experts.size(), " experts for a shard of ", s.num_experts);
  // wq / wk / wv: [heads * D, H], rows of the shard's heads; wo: [H, Hq * D], their columns.
  lw.wq = take_rows(lw.wq, H, size_t(s.q_head_begin) * D, size_t(s.num_q_heads) * D);
  lw.wk = take_rows(lw.wk, H, size_t(s.kv_head_begin) * D, size_t(s.num_kv_heads) * D);
  lw.wv = take_rows(lw.wv, H, size_t(s.kv_head_begin) * D, size_t(s.num_kv_heads) * D);
  lw.wo = take_cols(lw.wo, q_cols, size_t(s.q_head_begin) * D, size_t(s.num_q_heads) * D);
  if (size_t(s.ffn_size) != F) {
    // w1 / w3: [F, H] rows; w2: [H, F] columns.
    for (CpuExpertWeights& e : lw.experts) {
      e.w1 = take_rows(e.w1, H, s.ffn_begin, s.ffn_size);
      e.w3 = take_rows(e.w3, H, s.ffn_begin, s.ffn_size);
      e.w2 = take_cols(e.w2, F, s.ffn_begin, s.ffn_size);
    }
  }
  return lw;
}

CpuWeights slice_cpu_weights(const ModelConfig& c, const CpuWeights& w,
                             const dist::ShardSpec& s) {
  CpuWeights out;
  out.embed = w.embed;
  out.final_norm = w.final_norm;
  if (cpu_shard_has_lm_head(s)) out.lm_head = w.lm_head;
  out.layers.reserve(w.layers.size());
  for (const CpuLayerWeights& full : w.layers) {
    CpuLayerWeights lw = full;
    MIXSERVE_CHECK(size_t(s.expert_begin + s.num_experts) <= lw.experts.size(),
                   "CPU shard: experts [", s.expert_begin, ", ", s.expert_begin + s.num_experts,
                   ") outside a layer of ", lw.experts.size());
    lw.experts.assign(full.experts.begin() + s.expert_begin,
                      full.experts.begin() + s.expert_begin + s.num_experts);
    out.layers.push_back(slice_cpu_layer(c, std::move(lw), s));
  }
  return out;
}

}  // namespace mixserve
