// plan_counted_layout (moe_padded_fp8.h): when a large FP8 MoE step runs its experts as
// batched GEMMs over groups padded to the largest count, and with which G and C. Host code:
// runs without a GPU (in builds with the CUDA backend).
#ifdef MIXSERVE_HAVE_CUDA

#include <gtest/gtest.h>

#include <vector>

#include "backend/cuda/moe_padded_fp8.h"

namespace mixserve {
namespace {

using cuda::plan_counted_layout;

TEST(MoeCountedLayout, BalancedRoutingIsGroupedWithTheLargestCountRoundedUp) {
  // Batch 1,024 of top-2 over 8 experts, as a synthetic router spreads it.
  const std::vector<int32_t> counts = {250, 261, 249, 270, 243, 255, 266, 254};  // 2,048 pairs
  const auto l = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->groups, 8);
  EXPECT_EQ(l->capacity, 272);  // 270 rounded up to 16
}

TEST(MoeCountedLayout, EmptyExpertsAreNotGroups) {
  // Expert parallelism or a small step: only the experts with rows are groups.
  const std::vector<int32_t> counts = {0, 40, 0, 33, 0, 0, 47, 0};
  const auto l = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->groups, 3);
  EXPECT_EQ(l->capacity, 48);
  EXPECT_FALSE(plan_counted_layout(std::vector<int32_t>(8, 0).data(), 8, 1.25, 1 << 20, 16));
}

TEST(MoeCountedLayout, UnevenRoutingKeepsThePerExpertGemms) {
  // One hot expert: 8 x 1,008 padded rows for 2,048 pairs (> 1.25 x + 8 x 16).
  const std::vector<int32_t> counts = {1000, 150, 150, 150, 150, 150, 150, 148};
  EXPECT_FALSE(plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16));
  // ... unless the bound allows it.
  const auto l = plan_counted_layout(counts.data(), 8, 4.0, 1 << 20, 16);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->capacity, 1008);
  // The bound itself: padded rows <= max_padding x pairs + G x align.
  const std::vector<int32_t> edge = {120, 120, 128, 144};  // 4 x 144 = 576 rows, 512 pairs
  EXPECT_TRUE(plan_counted_layout(edge.data(), 4, 1.0, 1 << 20, 16));     // 576 <= 512 + 64
  EXPECT_FALSE(plan_counted_layout(edge.data(), 4, 0.99, 1 << 20, 16));   // 576 > 506.9 + 64
}

TEST(MoeCountedLayout, WorkspaceAndSwitchLimitIt) {
  const std::vector<int32_t> counts = {300, 310, 290, 305};
  // 4 x 320 = 1,280 rows: fits 1,280, not 1,279.
  EXPECT_TRUE(plan_counted_layout(counts.data(), 4, 1.25, 1280, 16));
  EXPECT_FALSE(plan_counted_layout(counts.data(), 4, 1.25, 1279, 16));
  EXPECT_FALSE(plan_counted_layout(counts.data(), 4, 0.0, 1 << 20, 16));  // turned off
  const auto l = plan_counted_layout(counts.data(), 4, 1.25, 1 << 20, 1);  // no rounding
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->capacity, 310);
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
