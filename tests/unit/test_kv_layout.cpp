// The CUDA KV pool's layout (backend/cuda/kv_layout.h; plain C++, so it is checked here on any
// machine): a bijection of (slot, head) onto the padded pool's rows, whose 16-slot tiles keep
// each head's keys contiguous.
#include "backend/cuda/kv_layout.h"

#include <gtest/gtest.h>

#include <vector>

namespace mixserve {
namespace {

TEST(KvLayout, EverySlotAndHeadHasItsOwnRowInThePaddedPool) {
  for (const int hkv : {1, 2, 8}) {
    for (const int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{100}}) {
      const int64_t rows = cuda::kv_pool_slots(n) * hkv;
      EXPECT_EQ(cuda::kv_pool_slots(n) % cuda::kKvTile, 0);
      EXPECT_GE(cuda::kv_pool_slots(n), n);
      EXPECT_LT(cuda::kv_pool_slots(n), n + cuda::kKvTile);
      std::vector<int> hits(static_cast<size_t>(rows), 0);
      for (int64_t s = 0; s < n; ++s) {
        for (int g = 0; g < hkv; ++g) {
          const int64_t r = cuda::kv_row(s, g, hkv);
          ASSERT_GE(r, 0);
          ASSERT_LT(r, rows) << "slot " << s << " head " << g;
          ++hits[static_cast<size_t>(r)];
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_LE(hits[static_cast<size_t>(r)], 1) << "row " << r << " of two (slot, head)s";
      }
    }
  }
}

TEST(KvLayout, AHeadsSixteenSlotsOfATileAreConsecutiveRows) {
  const int hkv = 8;
  for (const int64_t tile : {int64_t{0}, int64_t{5}, int64_t{1} << 20}) {
    for (int g = 0; g < hkv; ++g) {
      const int64_t first = cuda::kv_row(tile * 16, g, hkv);
      EXPECT_EQ(first, (tile * hkv + g) * 16);
      for (int i = 1; i < 16; ++i) EXPECT_EQ(cuda::kv_row(tile * 16 + i, g, hkv), first + i);
    }
  }
  // Head g + 1 of a tile follows head g's 16 rows; the next tile follows the last head's.
  EXPECT_EQ(cuda::kv_row(0, 1, hkv), 16);
  EXPECT_EQ(cuda::kv_row(16, 0, hkv), 16 * hkv);
}

}  // namespace
}  // namespace mixserve
