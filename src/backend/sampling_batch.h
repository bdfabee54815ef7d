// SamplingBatch: what a backend that samples on its own device needs to pick the next token of
// each logits row exactly as the host Sampler (engine/sampler.h) would: per-row parameters, the
// draw counter, and the penalised / suppressed token ids of each row.
//
// Shapes: R = logits rows of the step (BatchPlan::logits_rows), V = vocabulary size.
// entry_offsets [R+1] delimits each row's entries [entry_offsets[r], entry_offsets[r+1]);
// a row lists each token id at most once.
#pragma once

#include <cstdint>
#include <vector>

namespace mixserve {

struct SamplingRow {
  float temperature = 0.0f;         // 0 = greedy (argmax, ties to the lowest id)
  int32_t top_k = -1;               // <= 0 or >= V: off
  float top_p = 1.0f;               // 1 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // applied to entries with kInHistory
  float presence_penalty = 0.0f;    // applied to entries with output_count > 0
  float frequency_penalty = 0.0f;
  int32_t sample_index = 0;  // the draw is counter_uniform(seed, sample_index, draw_index)
  uint64_t seed = 0;
  int64_t draw_index = 0;  // output tokens generated so far
  int32_t logprobs = -1;   // >= 0: the raw logits row comes back (host log-probabilities)
  int32_t pad_ = 0;
};

struct PenaltyEntry {
  static constexpr uint32_t kInHistory = 1;   // in prompt or output: repetition penalty
  static constexpr uint32_t kSuppressed = 2;  // EOS / stop id before min_tokens: -inf
  int32_t id = 0;
  int32_t output_count = 0;  // occurrences among the output tokens
  uint32_t flags = 0;
};

struct SamplingBatch {
  std::vector<SamplingRow> rows;          // [R]
  std::vector<int32_t> entry_offsets{0};  // [R+1]
  std::vector<PenaltyEntry> entries;

  void clear() {
    rows.clear();
    entry_offsets.assign(1, 0);
    entries.clear();
  }
};

struct SampledTokens {
  std::vector<int32_t> ids;       // [R]
  std::vector<float> raw_logits;  // [rows with logprobs >= 0, V], in row order
};

}  // namespace mixserve
