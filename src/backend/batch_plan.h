// BatchPlan: everything the model sees for one step, as flat arrays.
//
// Shapes: T = tokens computed in this step (prefill chunks and decode tokens together),
//         S = sequences in the step, R = rows whose logits are wanted, B = max blocks per seq.
// Sequence s owns tokens [seq_offsets[s], seq_offsets[s+1]) of the flat arrays; its KV cache
// after this step holds context_lens[s] tokens (the new ones included), stored in the blocks
// block_tables[s*B .. s*B+B) (unused entries are -1). A prefill chunk, a whole prompt and a
// decode step are the same thing with different lengths.
#pragma once

#include <cstdint>
#include <vector>

namespace mixserve {

struct BatchPlan {
  std::vector<int32_t> token_ids;      // [T]
  std::vector<int32_t> positions;      // [T] absolute position of each token in its sequence
  std::vector<int32_t> seq_offsets;    // [S+1] prefix sums of tokens per sequence
  std::vector<int32_t> context_lens;   // [S] KV length of each sequence after this step
  std::vector<int32_t> block_tables;   // [S*B] physical block ids, -1 padded
  int32_t max_blocks_per_seq = 0;      // B
  std::vector<int64_t> slot_mapping;   // [T] KV slot of each token = block * block_size + offset
  std::vector<int32_t> logits_rows;    // [R] indices into [0,T) whose logits are returned, in order

  int32_t num_tokens() const { return static_cast<int32_t>(token_ids.size()); }
  int32_t num_seqs() const { return static_cast<int32_t>(context_lens.size()); }
  // Throws mixserve::Error if the arrays disagree (sizes, ranges); backends call it in debug
  // paths and tests, the engine never builds an invalid plan.
  void validate(int32_t block_size, int32_t num_blocks) const;
};

}  // namespace mixserve
