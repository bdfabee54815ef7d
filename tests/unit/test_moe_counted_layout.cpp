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

// The pre-sync group derives G and C on the device with counted_groups_and_capacity; the
// host's plan must give the same for every layout it accepts (random counts, empty experts,
// alignments 1, 16 and 64).
TEST(MoeCountedLayout, DeviceFormulaMatchesThePlan) {
  uint64_t r = 99;
  int accepted = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int E = 1 + trial % 16, align = trial % 3 == 0 ? 1 : trial % 3 == 1 ? 16 : 64;
    std::vector<int32_t> counts(E);
    for (int32_t& n : counts) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      n = (r >> 60) < 3 ? 0 : int32_t((r >> 33) % 700);
    }
    int G = -1, C = -1;
    int64_t pairs = -1;
    cuda::counted_groups_and_capacity(counts.data(), E, align, &G, &C, &pairs);
    int64_t sum = 0;
    for (int32_t n : counts) sum += n;
    EXPECT_EQ(pairs, sum);
    const auto l = plan_counted_layout(counts.data(), E, 8.0, size_t{1} << 30, align, 3, 0.0);
    if (!l) {
      EXPECT_EQ(G, 0) << "trial " << trial;
      continue;
    }
    ++accepted;
    EXPECT_EQ(l->groups, G) << "trial " << trial;
    EXPECT_EQ(l->capacity, C) << "trial " << trial;
  }
  EXPECT_GT(accepted, 1500);
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

TEST(MoeCountedLayout, OneTierUnlessAsked) {
  const std::vector<int32_t> counts = {384, 300, 380, 290, 385, 295, 370, 310};
  const auto l = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->tiers, 1);
  EXPECT_EQ(l->tier[0].begin, 0);
  EXPECT_EQ(l->tier[0].end, 8);
  EXPECT_EQ(l->tier[0].capacity, 400);
  EXPECT_EQ(l->tiered_rows(), 8 * 400);
}

TEST(MoeCountedLayout, TiersCutTheGroupsByCountWhereTheCutPaysForItself) {
  // 2,714 pairs. By count: 385 384 380 370 | 310 300 295 290 -> capacities 400 384 384 384
  // 320 304 304 304. One launch: 8 x 400 = 3,200 rows; two: 4 x 400 + 4 x 320 = 2,880; three:
  // 2,832 (48 fewer: less than 2% of the pairs, 54 rows; more than 1%, 27); four: 2,784
  // (400 | 384 x 3 | 320 | 304 x 3, 48 fewer again).
  const std::vector<int32_t> counts = {384, 300, 380, 290, 385, 295, 370, 310};
  const auto two = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16, 4, 0.02);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->groups, 8);
  EXPECT_EQ(two->capacity, 400);  // the layout: still G x the largest count
  ASSERT_EQ(two->tiers, 2);
  EXPECT_EQ(two->tier[0].begin, 0);
  EXPECT_EQ(two->tier[0].end, 4);
  EXPECT_EQ(two->tier[0].capacity, 400);
  EXPECT_EQ(two->tier[1].begin, 4);
  EXPECT_EQ(two->tier[1].end, 8);
  EXPECT_EQ(two->tier[1].capacity, 320);
  EXPECT_EQ(two->tiered_rows(), 2880);
  const auto four = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16, 4, 0.01);
  ASSERT_TRUE(four.has_value());
  EXPECT_EQ(four->tiers, 4);
  EXPECT_EQ(four->tiered_rows(), 2784);
  const auto three = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16, 3, 0.01);
  ASSERT_TRUE(three.has_value());
  ASSERT_EQ(three->tiers, 3);
  EXPECT_EQ(three->tiered_rows(), 2832);
  for (int t = 0; t < three->tiers; ++t) {  // contiguous, in order, capacities falling
    EXPECT_EQ(three->tier[t].begin, t == 0 ? 0 : three->tier[t - 1].end);
    EXPECT_GT(three->tier[t].end, three->tier[t].begin);
    if (t > 0) {
      EXPECT_LT(three->tier[t].capacity, three->tier[t - 1].capacity);
    }
  }
  EXPECT_EQ(three->tier[2].end, 8);
  // At most max_tiers, even at no price.
  const auto capped = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16, 2, 0.0);
  ASSERT_TRUE(capped.has_value());
  EXPECT_EQ(capped->tiers, 2);
  // Every tier's capacity covers its groups' counts (the by-count order: 385, 384, ...).
  EXPECT_GE(three->tier[0].capacity, 385);
}

TEST(MoeCountedLayout, NoCutBelowTheWeightBoundFloor) {
  // Batch 192 of top-2 (OFF-2K's decode): ~48 rows an expert, every GEMM bound by its weight
  // reads. Without a floor the planner cuts (64 | 48 | 32 rows); with floor 256 every group
  // costs 256 rows and a cut gains nothing.
  const std::vector<int32_t> counts = {60, 41, 50, 33, 47, 55, 38, 60};
  const auto cut = plan_counted_layout(counts.data(), 8, 1.25 * 2, 1 << 20, 16, 3, 0.02);
  ASSERT_TRUE(cut.has_value());
  EXPECT_GT(cut->tiers, 1);
  const auto floored =
      plan_counted_layout(counts.data(), 8, 1.25 * 2, 1 << 20, 16, 3, 0.02, 0, 256);
  ASSERT_TRUE(floored.has_value());
  EXPECT_EQ(floored->tiers, 1);
  EXPECT_EQ(floored->tiered_rows(), 8 * 64);
  // Above the floor the cuts stay: the 2,714-pair case of the test above.
  const std::vector<int32_t> big = {384, 300, 380, 290, 385, 295, 370, 310};
  const auto l = plan_counted_layout(big.data(), 8, 1.25, 1 << 20, 16, 4, 0.02, 0, 256);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->tiers, 2);
  EXPECT_EQ(l->tiered_rows(), 2880);
}

TEST(MoeCountedLayout, NoCutWhenTheCountsRoundAlike) {
  const std::vector<int32_t> counts = {0, 40, 0, 33, 0, 0, 47, 0};  // all round up to 48
  const auto l = plan_counted_layout(counts.data(), 8, 1.25, 1 << 20, 16, 4, 0.0);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->groups, 3);
  EXPECT_EQ(l->tiers, 1);
  EXPECT_EQ(l->tiered_rows(), 3 * 48);
  // Ties in count keep the lower expert first; one group a tier at most.
  const std::vector<int32_t> even = {100, 200, 100, 200};
  const auto t = plan_counted_layout(even.data(), 4, 2.0, 1 << 20, 1, 4, 0.0);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->tiers, 2);
  EXPECT_EQ(t->tiered_rows(), 2 * 200 + 2 * 100);
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
