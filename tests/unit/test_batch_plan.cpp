#include <gtest/gtest.h>

#include "backend/batch_plan.h"
#include "util/error.h"

namespace mixserve {
namespace {

BatchPlan two_sequence_plan() {
  // Sequence 0: a 3-token prefill in block 2; sequence 1: one decode token at position 17
  // (second block, block id 0).
  BatchPlan p;
  p.token_ids = {5, 6, 7, 9};
  p.positions = {0, 1, 2, 17};
  p.seq_offsets = {0, 3, 4};
  p.context_lens = {3, 18};
  p.max_blocks_per_seq = 2;
  p.block_tables = {2, -1, 1, 0};
  p.slot_mapping = {32, 33, 34, 1};
  p.logits_rows = {2, 3};
  return p;
}

TEST(BatchPlan, ValidPlanPasses) { EXPECT_NO_THROW(two_sequence_plan().validate(16, 4)); }

TEST(BatchPlan, RejectsSlotOutsideCache) {
  BatchPlan p = two_sequence_plan();
  p.slot_mapping[0] = 64;
  EXPECT_THROW(p.validate(16, 4), Error);
}

TEST(BatchPlan, RejectsMissingBlock) {
  BatchPlan p = two_sequence_plan();
  p.block_tables[3] = -1;  // sequence 1 needs two blocks
  EXPECT_THROW(p.validate(16, 4), Error);
}

TEST(BatchPlan, RejectsBadOffsets) {
  BatchPlan p = two_sequence_plan();
  p.seq_offsets = {0, 3, 5};
  EXPECT_THROW(p.validate(16, 4), Error);
}

}  // namespace
}  // namespace mixserve
