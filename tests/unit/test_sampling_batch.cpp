// append_sampling_row: the host side of device sampling turns SamplingParams + SampleContext
// into one SamplingRow and one entry per distinct penalised / suppressed id (sorted by id).
#include <gtest/gtest.h>

#include "engine/device_sampling.h"

namespace mixserve {
namespace {

TEST(SamplingBatch, RowsAndEntriesCarryTheSamplerInputs) {
  SamplingBatch b;
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.2f;
  p.frequency_penalty = 0.5f;
  p.logprobs = 3;
  const std::vector<int32_t> prompt = {5, 9, 5}, output = {9, 7, 9}, suppressed = {2};
  append_sampling_row(p, SampleContext{prompt, output, suppressed, 77, 4}, &b);
  SamplingParams plain;  // no penalties: no entries
  append_sampling_row(plain, SampleContext{prompt, output, {}, 1, 0}, &b);

  ASSERT_EQ(b.rows.size(), 2u);
  const SamplingRow& r = b.rows[0];
  EXPECT_EQ(r.temperature, 0.7f);
  EXPECT_EQ(r.top_k, 40);
  EXPECT_EQ(r.top_p, 0.9f);
  EXPECT_EQ(r.min_p, 0.05f);
  EXPECT_EQ(r.seed, 77u);
  EXPECT_EQ(r.sample_index, 4);
  EXPECT_EQ(r.draw_index, 3);  // three output tokens so far
  EXPECT_EQ(r.logprobs, 3);
  ASSERT_EQ(b.entry_offsets, (std::vector<int32_t>{0, 4, 4}));
  // ids 2 (suppressed), 5 (prompt), 7 (output once), 9 (prompt + output twice)
  const std::vector<int32_t> ids = {2, 5, 7, 9}, counts = {0, 0, 1, 2};
  const std::vector<uint32_t> flags = {PenaltyEntry::kSuppressed, PenaltyEntry::kInHistory,
                                       PenaltyEntry::kInHistory, PenaltyEntry::kInHistory};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(b.entries[i].id, ids[i]);
    EXPECT_EQ(b.entries[i].output_count, counts[i]) << "id " << ids[i];
    EXPECT_EQ(b.entries[i].flags, flags[i]) << "id " << ids[i];
  }
  EXPECT_EQ(b.rows[1].draw_index, 3);
}

}  // namespace
}  // namespace mixserve
