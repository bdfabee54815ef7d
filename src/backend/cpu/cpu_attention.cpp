#include "backend/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_ops.h"

namespace mixserve::cpu {

void write_kv(const BatchPlan& plan, const AttentionShape& shape, const float* k, const float* v,
              float* k_cache, float* v_cache) {
  const size_t row = static_cast<size_t>(shape.num_kv_heads) * shape.head_dim;
  for (int t = 0; t < plan.num_tokens(); ++t) {
    const size_t slot = static_cast<size_t>(plan.slot_mapping[t]);
    std::memcpy(k_cache + slot * row, k + t * row, row * sizeof(float));
    std::memcpy(v_cache + slot * row, v + t * row, row * sizeof(float));
  }
}

void paged_attention(const BatchPlan& plan, const AttentionShape& shape, const float* q,
                     const float* k_cache, const float* v_cache, float* out, int num_threads) {
  const int T = plan.num_tokens(), Hq = shape.num_heads, D = shape.head_dim;
  const int group = Hq / shape.num_kv_heads;
  const size_t kv_row = static_cast<size_t>(shape.num_kv_heads) * D;
  // transformers multiplies q.k by `head_dim ** -0.5`, a Python float used as float32.
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));

  std::vector<int> seq_of_token(T);
  for (int s = 0; s < plan.num_seqs(); ++s) {
    for (int t = plan.seq_offsets[s]; t < plan.seq_offsets[s + 1]; ++t) seq_of_token[t] = s;
  }

#pragma omp parallel num_threads(num_threads) if (num_threads > 1 && T * Hq > 1)
  {
    std::vector<float> probs;     // [positions seen]
    std::vector<size_t> offsets;  // [positions seen] element offset of position j's K/V row
#pragma omp for schedule(dynamic, 1)
    for (int th = 0; th < T * Hq; ++th) {
      const int t = th / Hq, h = th % Hq, kvh = h / group, s = seq_of_token[t];
      const int p = plan.positions[t];
      const int first = shape.sliding_window > 0 ? std::max(0, p - shape.sliding_window + 1) : 0;
      const int n = p - first + 1;
      const int32_t* blocks = plan.block_tables.data() + size_t(s) * plan.max_blocks_per_seq;
      offsets.resize(n);
      for (int j = first; j <= p; ++j) {
        const size_t slot = size_t(blocks[j / shape.block_size]) * shape.block_size +
                            size_t(j % shape.block_size);
        offsets[j - first] = slot * kv_row + size_t(kvh) * D;
      }
      const float* qv = q + (size_t(t) * Hq + h) * D;
      probs.resize(n);
      float max_score = -INFINITY;
      for (int j = 0; j < n; ++j) {
        probs[j] = dot(qv, k_cache + offsets[j], D) * scale;
        max_score = std::max(max_score, probs[j]);
      }
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) {
        probs[j] = std::exp(probs[j] - max_score);
        sum += probs[j];
      }
      float* o = out + (size_t(t) * Hq + h) * D;
      std::fill(o, o + D, 0.0f);
      for (int j = 0; j < n; ++j) {
        const float w = probs[j] / sum;
        const float* vv = v_cache + offsets[j];
        for (int d = 0; d < D; ++d) o[d] += w * vv[d];
      }
    }
  }
}

}  // namespace mixserve::cpu
