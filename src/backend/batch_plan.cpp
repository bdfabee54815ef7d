#include "backend/batch_plan.h"

#include "util/error.h"

namespace mixserve {

void BatchPlan::validate(int32_t block_size, int32_t num_blocks) const {
  const int32_t T = num_tokens(), S = num_seqs();
  MIXSERVE_CHECK(positions.size() == size_t(T) && slot_mapping.size() == size_t(T),
                 "BatchPlan: positions/slot_mapping must have one entry per token");
  MIXSERVE_CHECK(seq_offsets.size() == size_t(S) + 1, "BatchPlan: seq_offsets must have S+1 entries");
  MIXSERVE_CHECK(seq_offsets.front() == 0 && seq_offsets.back() == T,
                 "BatchPlan: seq_offsets must start at 0 and end at T");
  MIXSERVE_CHECK(block_tables.size() == size_t(S) * size_t(max_blocks_per_seq),
                 "BatchPlan: block_tables must be S * max_blocks_per_seq");
  const int64_t capacity = int64_t{block_size} * num_blocks;
  for (int32_t s = 0; s < S; ++s) {
    const int32_t begin = seq_offsets[s], end = seq_offsets[s + 1];
    MIXSERVE_CHECK(begin <= end, "BatchPlan: seq_offsets must be non-decreasing");
    MIXSERVE_CHECK(context_lens[s] >= end - begin, "BatchPlan: context shorter than new tokens");
    MIXSERVE_CHECK(context_lens[s] <= int64_t{max_blocks_per_seq} * block_size,
                   "BatchPlan: context_lens exceeds the block table");
    for (int32_t t = begin; t < end; ++t) {
      MIXSERVE_CHECK(positions[t] >= 0 && positions[t] < context_lens[s],
                     "BatchPlan: position outside the context");
      MIXSERVE_CHECK(slot_mapping[t] >= 0 && slot_mapping[t] < capacity,
                     "BatchPlan: slot outside the KV cache");
    }
    const int32_t used_blocks = (context_lens[s] + block_size - 1) / block_size;
    for (int32_t b = 0; b < used_blocks; ++b) {
      const int32_t blk = block_tables[size_t(s) * max_blocks_per_seq + b];
      MIXSERVE_CHECK(blk >= 0 && blk < num_blocks, "BatchPlan: block id outside the KV cache");
    }
  }
  for (int32_t r : logits_rows) MIXSERVE_CHECK(r >= 0 && r < T, "BatchPlan: logits row outside [0,T)");
}

}  // namespace mixserve
