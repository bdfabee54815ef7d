// Builds BatchPlans for the CUDA tests: sequences given as (context after the step, new
// tokens), KV blocks drawn from a shuffled pool so that no table is contiguous.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "backend/batch_plan.h"

namespace mixserve::cuda_test {

struct SeqSpec {
  int context = 0;     // KV length after the step
  int new_tokens = 0;  // the last new_tokens positions are computed in this step
};

// Every sequence gets its own blocks from a shuffled [0, num_blocks) pool; logits rows are all
// tokens. Token ids are left 0 (callers that need them fill plan.token_ids).
inline BatchPlan build_plan(const std::vector<SeqSpec>& seqs, int block_size, int num_blocks,
                            std::mt19937& gen) {
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), gen);
  BatchPlan p;
  int B = 1;
  for (const SeqSpec& s : seqs) B = std::max(B, (s.context + block_size - 1) / block_size);
  p.max_blocks_per_seq = B;
  p.seq_offsets.push_back(0);
  size_t next = 0;
  for (const SeqSpec& s : seqs) {
    const int used = (s.context + block_size - 1) / block_size;
    std::vector<int32_t> table(B, -1);
    for (int b = 0; b < used; ++b) table[b] = pool.at(next++);
    p.block_tables.insert(p.block_tables.end(), table.begin(), table.end());
    for (int pos = s.context - s.new_tokens; pos < s.context; ++pos) {
      p.logits_rows.push_back(p.num_tokens());
      p.token_ids.push_back(0);
      p.positions.push_back(pos);
      p.slot_mapping.push_back(int64_t{table[pos / block_size]} * block_size + pos % block_size);
    }
    p.context_lens.push_back(s.context);
    p.seq_offsets.push_back(p.num_tokens());
  }
  return p;
}

}  // namespace mixserve::cuda_test
