// make_thread_group: exact, identical sums on every rank, broadcast from every root, a barrier
// that holds, all reusable many times, and errors instead of hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "dist_test_support.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

using dist_test::expected_sum;
using dist_test::inputs;
using dist_test::run_ranks;

// Every rank reduces fresh inputs `calls` times and compares the bits with the rank-order sum.
void check_all_reduce(int size, size_t n, int calls) {
  const uint64_t seed = dist_test::fresh_seed();
  SCOPED_TRACE("size " + std::to_string(size) + " n " + std::to_string(n) + " seed " +
               std::to_string(seed));
  auto comms = make_thread_group(size);
  std::atomic<int> mismatches{0};
  const auto errors = run_ranks(size, [&](int r) {
    Communicator& comm = *comms[r];
    EXPECT_EQ(comm.rank(), r);
    EXPECT_EQ(comm.size(), size);
    for (int call = 0; call < calls; ++call) {
      std::vector<float> data = inputs(seed, call, r, n);
      comm.all_reduce_sum(data.data(), n);
      const std::vector<float> want = expected_sum(seed, call, size, n);
      // n == 0: data() may be null, which memcmp must not get.
      if (n > 0 && std::memcmp(data.data(), want.data(), n * sizeof(float)) != 0) ++mismatches;
    }
  });
  for (int r = 0; r < size; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(DistThreadGroup, AllReduceSmallManyTimes) {
  for (int size : {1, 2, 3, 4, 8}) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}}) check_all_reduce(size, n, 1000);
  }
}

TEST(DistThreadGroup, AllReduceLarge) {
  for (int size : {1, 2, 3, 4, 8}) check_all_reduce(size, 100003, 4);
}

TEST(DistThreadGroup, BroadcastFromEveryRoot) {
  for (int size : {1, 2, 3, 4, 8}) {
    const uint64_t seed = dist_test::fresh_seed();
    SCOPED_TRACE("size " + std::to_string(size) + " seed " + std::to_string(seed));
    auto comms = make_thread_group(size);
    std::atomic<int> mismatches{0};
    const auto errors = run_ranks(size, [&](int r) {
      for (int call = 0; call < 300; ++call) {
        const int root = call % size;
        // Lengths 0, 1, 7, 100003 in turn (the long one rarely: it is copied size times).
        const size_t lens[] = {0, 1, 7, call % 100 == 3 ? size_t{100003} : size_t{13}};
        const size_t len = lens[call % 4];
        std::vector<uint8_t> want(len);
        for (size_t i = 0; i < len; ++i) {
          want[i] = static_cast<uint8_t>(dist_test::splitmix64(seed + call * 7919 + i));
        }
        // Non-roots start with junk of another length: broadcast must resize them.
        std::vector<uint8_t> bytes = r == root ? want : std::vector<uint8_t>(r * 5 + 3, 0xAB);
        comms[r]->broadcast(&bytes, root);
        if (bytes != want) ++mismatches;
      }
    });
    for (int r = 0; r < size; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
    EXPECT_EQ(mismatches.load(), 0);
  }
}

TEST(DistThreadGroup, BarrierHoldsEveryRank) {
  for (int size : {1, 2, 3, 4, 8}) {
    auto comms = make_thread_group(size);
    std::atomic<int> arrived{0};
    std::atomic<int> violations{0};
    run_ranks(size, [&](int r) {
      for (int k = 0; k < 300; ++k) {
        arrived.fetch_add(1);
        comms[r]->barrier();
        // Everyone arrived at barrier k; nobody can be past barrier k+1 yet.
        const int a = arrived.load();
        if (a < size * (k + 1) || a > size * (k + 2) - 1) ++violations;
      }
    });
    EXPECT_EQ(violations.load(), 0) << "size " << size;
  }
}

TEST(DistThreadGroup, MixedCollectivesInterleave) {
  const uint64_t seed = dist_test::fresh_seed();
  const int size = 3;
  auto comms = make_thread_group(size);
  std::atomic<int> mismatches{0};
  run_ranks(size, [&](int r) {
    for (int call = 0; call < 300; ++call) {
      std::vector<float> data = inputs(seed, call, r, 5);
      comms[r]->all_reduce_sum(data.data(), data.size());
      if (data != expected_sum(seed, call, size, 5)) ++mismatches;
      std::vector<uint8_t> bytes(r == 1 ? 3 : 0, static_cast<uint8_t>(call));
      comms[r]->broadcast(&bytes, 1);
      if (bytes != std::vector<uint8_t>(3, static_cast<uint8_t>(call))) ++mismatches;
      comms[r]->barrier();
    }
  });
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(DistThreadGroup, MismatchedCountsThrowOnEveryRank) {
  auto comms = make_thread_group(3);
  const auto errors = run_ranks(3, [&](int r) {
    std::vector<float> data(r == 2 ? 5 : 4, 1.0f);
    comms[r]->all_reduce_sum(data.data(), data.size());
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_NE(errors[r].find("rank 2 passed 5"), std::string::npos) << errors[r];
  }
}

TEST(DistThreadGroup, MismatchedRootsThrowOnEveryRank) {
  auto comms = make_thread_group(2);
  const auto errors = run_ranks(2, [&](int r) {
    std::vector<uint8_t> bytes(2);
    comms[r]->broadcast(&bytes, r);
  });
  for (int r = 0; r < 2; ++r) EXPECT_NE(errors[r].find("named root 1"), std::string::npos);
}

TEST(DistThreadGroup, DestroyedRankMakesWaitersThrow) {
  auto comms = make_thread_group(3);
  std::atomic<int> waiting{0};
  const auto errors = run_ranks(3, [&](int r) {
    if (r == 2) {
      // Rank 2 fails before its collective; its communicator goes away with it.
      while (waiting.load() < 2) std::this_thread::yield();
      comms[2].reset();
      return;
    }
    waiting.fetch_add(1);
    comms[r]->barrier();
  });
  EXPECT_NE(errors[0].find("destroyed"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("destroyed"), std::string::npos) << errors[1];
}

TEST(DistThreadGroup, RejectsBadSizeAndRoot) {
  EXPECT_THROW(make_thread_group(0), Error);
  auto comms = make_thread_group(1);
  std::vector<uint8_t> bytes;
  EXPECT_THROW(comms[0]->broadcast(&bytes, 1), Error);
}

}  // namespace
}  // namespace mixserve::dist
