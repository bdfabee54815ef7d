#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "engine/block_manager.h"

namespace mixserve {
namespace {

std::vector<int32_t> iota_tokens(int32_t n, int32_t start = 100) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(BlockManager, AllocatesChunkThenGrowsAndFreesEverything) {
  BlockManager bm(8, 4, /*enable_prefix_caching=*/true);
  BlockTable t;
  auto toks = iota_tokens(10);
  EXPECT_EQ(bm.allocate_for_prefill(toks, /*max_new_tokens=*/5, t), 0);
  EXPECT_EQ(t.blocks.size(), 2u);  // 5 tokens -> 2 blocks of 4
  EXPECT_EQ(bm.num_free_blocks(), 6);
  EXPECT_TRUE(bm.append_slots(t, 8));  // still 2 blocks
  EXPECT_EQ(t.blocks.size(), 2u);
  EXPECT_TRUE(bm.append_slots(t, 9));  // crosses a boundary
  EXPECT_EQ(t.blocks.size(), 3u);
  bm.free(t);
  EXPECT_TRUE(t.blocks.empty());
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

TEST(BlockManager, AllOrNothingWhenFull) {
  BlockManager bm(3, 4, true);
  BlockTable a, b;
  auto toks = iota_tokens(12);
  EXPECT_EQ(bm.allocate_for_prefill(toks, 8, a), 0);  // 2 blocks
  EXPECT_EQ(bm.allocate_for_prefill(toks, 8, b), -1);
  EXPECT_TRUE(b.blocks.empty());
  EXPECT_EQ(bm.num_free_blocks(), 1);
  EXPECT_FALSE(bm.append_slots(a, 13));  // would need 2 more
  EXPECT_EQ(a.blocks.size(), 2u);
  bm.free(a);
  EXPECT_EQ(bm.num_free_blocks(), 3);
}

TEST(BlockManager, ReusesComputedFullBlocksAndKeepsLastToken) {
  BlockManager bm(10, 4, true);
  auto toks = iota_tokens(10);  // blocks [0,4) [4,8) full, [8,10) partial
  BlockTable a;
  ASSERT_EQ(bm.allocate_for_prefill(toks, 10, a), 0);
  // Nothing is cached before the KV is computed.
  BlockTable early;
  EXPECT_EQ(bm.allocate_for_prefill(toks, 10, early), 0);
  bm.free(early);
  bm.commit_computed(toks, 10, a);
  EXPECT_EQ(a.hashes.size(), 2u);

  BlockTable b;
  EXPECT_EQ(bm.allocate_for_prefill(toks, 10, b), 8);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(b.blocks[1], a.blocks[1]);
  EXPECT_NE(b.blocks[2], a.blocks[2]);  // the partial block is private

  // A prompt of exactly 8 tokens: the last block is recomputed so the model yields logits.
  BlockTable c;
  auto eight = iota_tokens(8);
  EXPECT_EQ(bm.allocate_for_prefill(eight, 8, c), 4);
  EXPECT_EQ(c.blocks.size(), 2u);
  EXPECT_EQ(c.blocks[0], a.blocks[0]);
  EXPECT_NE(c.blocks[1], a.blocks[1]);

  // A different first block breaks the chain even if later blocks agree.
  auto other = toks;
  other[0] = 7;
  BlockTable d;
  EXPECT_EQ(bm.allocate_for_prefill(other, 10, d), 0);

  for (BlockTable* t : {&a, &b, &c, &d}) bm.free(*t);
  EXPECT_EQ(bm.num_free_blocks(), 10);
}

TEST(BlockManager, FreedCachedBlocksSurviveUntilEvictedLeastRecentlyUsedFirst) {
  BlockManager bm(5, 2, true);
  auto toks = iota_tokens(5);  // 2 full blocks + 1 partial
  BlockTable a;
  ASSERT_EQ(bm.allocate_for_prefill(toks, 5, a), 0);
  bm.commit_computed(toks, 5, a);
  bm.free(a);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  // A fresh request takes never-cached blocks first.
  BlockTable x;
  auto unrelated = iota_tokens(4, 500);
  ASSERT_EQ(bm.allocate_for_prefill(unrelated, 4, x), 0);
  BlockTable b;
  EXPECT_EQ(bm.allocate_for_prefill(toks, 1, b), 4);  // both cached blocks still there
  bm.free(b);
  bm.free(x);
  // Four blocks out of five: one cached block must go, and it must be the tail.
  BlockTable y;
  auto big = iota_tokens(8, 900);
  ASSERT_EQ(bm.allocate_for_prefill(big, 8, y), 0);
  bm.free(y);
  BlockTable c;
  EXPECT_EQ(bm.allocate_for_prefill(toks, 1, c), 2);  // the head survived, the tail did not
  bm.free(c);
  EXPECT_EQ(bm.num_free_blocks(), 5);
}

TEST(BlockManager, CachedHitsThatAreFreeCountAgainstCapacity) {
  BlockManager bm(3, 2, true);
  auto toks = iota_tokens(5);
  BlockTable a;
  ASSERT_EQ(bm.allocate_for_prefill(toks, 5, a), 0);  // all 3 blocks
  bm.commit_computed(toks, 5, a);
  bm.free(a);
  // Reusing the 2 cached blocks leaves 1 free block: 5 tokens fit, 7 would not.
  auto longer = iota_tokens(7);
  BlockTable b;
  EXPECT_EQ(bm.allocate_for_prefill(longer, 1, b), 4);
  EXPECT_EQ(b.blocks.size(), 3u);
  EXPECT_FALSE(bm.append_slots(b, 7));
  bm.free(b);
  EXPECT_EQ(bm.num_free_blocks(), 3);
}

TEST(BlockManager, PrefixCachingOffNeverShares) {
  BlockManager bm(6, 2, false);
  auto toks = iota_tokens(5);
  BlockTable a, b;
  ASSERT_EQ(bm.allocate_for_prefill(toks, 5, a), 0);
  bm.commit_computed(toks, 5, a);
  EXPECT_EQ(bm.allocate_for_prefill(toks, 5, b), 0);
  bm.free(a);
  bm.free(b);
  EXPECT_EQ(bm.num_free_blocks(), 6);
}

TEST(BlockManager, ChainHashDependsOnPrefix) {
  std::vector<int32_t> blk = {1, 2, 3};
  EXPECT_NE(BlockManager::chain_hash(0, blk), BlockManager::chain_hash(1, blk));
  std::vector<int32_t> other = {1, 2, 4};
  EXPECT_NE(BlockManager::chain_hash(0, blk), BlockManager::chain_hash(0, other));
}

}  // namespace
}  // namespace mixserve
