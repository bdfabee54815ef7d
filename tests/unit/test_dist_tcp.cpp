// connect_tcp: ranks as threads and as processes on a free local port; exact sums, broadcast
// from every root; timeouts, refusals and dead peers end in errors that say what happened.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "dist/communicator.h"
#include "dist_test_support.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

using dist_test::expected_sum;
using dist_test::free_port;
using dist_test::inputs;
using dist_test::run_ranks;

Rendezvous rendezvous(int world, int rank, int port, double timeout_s = 20.0) {
  Rendezvous rv;
  rv.world_size = world;
  rv.rank = rank;
  rv.master_addr = "127.0.0.1";
  rv.master_port = port;
  rv.timeout_s = timeout_s;
  return rv;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The collectives every rank runs in the thread and process tests; returns the mismatches.
int exercise(Communicator& comm, uint64_t seed) {
  const int size = comm.size(), r = comm.rank();
  int bad = 0;
  uint64_t call = 0;
  for (int rep = 0; rep < 50; ++rep) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}}) {
      std::vector<float> data = inputs(seed, call, r, n);
      comm.all_reduce_sum(data.data(), n);
      if (data != expected_sum(seed, call++, size, n)) ++bad;
    }
  }
  for (int rep = 0; rep < 2; ++rep) {
    std::vector<float> data = inputs(seed, call, r, 100003);
    comm.all_reduce_sum(data.data(), data.size());
    const std::vector<float> want = expected_sum(seed, call++, size, 100003);
    if (std::memcmp(data.data(), want.data(), want.size() * sizeof(float)) != 0) ++bad;
  }
  for (int root = 0; root < size; ++root) {
    for (size_t len : {size_t{0}, size_t{1}, size_t{100003}}) {
      std::vector<uint8_t> want(len);
      for (size_t i = 0; i < len; ++i) {
        want[i] = static_cast<uint8_t>(dist_test::splitmix64(seed + root * 31 + len + i));
      }
      std::vector<uint8_t> bytes = r == root ? want : std::vector<uint8_t>(r + 2, 0xCD);
      comm.broadcast(&bytes, root);
      if (bytes != want) ++bad;
    }
  }
  for (int k = 0; k < 20; ++k) comm.barrier();
  return bad;
}

TEST(DistTcp, ThreeRanksAsThreads) {
  const uint64_t seed = dist_test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int port = free_port();
  std::atomic<int> bad{0};
  const auto errors = run_ranks(3, [&](int r) {
    auto comm = connect_tcp(rendezvous(3, r, port));
    EXPECT_EQ(comm->rank(), r);
    EXPECT_EQ(comm->size(), 3);
    bad += exercise(*comm, seed);
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  EXPECT_EQ(bad.load(), 0);
}

TEST(DistTcp, ThreeRanksAsProcesses) {
  const uint64_t seed = dist_test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int port = free_port();
  std::vector<pid_t> children;
  for (int r = 1; r < 3; ++r) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::alarm(120);  // never outlive a stuck test
      int code = 3;
      try {
        auto comm = connect_tcp(rendezvous(3, r, port));
        code = exercise(*comm, seed) == 0 ? 0 : 1;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "rank %d: %s\n", r, e.what());
        code = 2;
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  int bad = -1;
  std::string error;
  try {
    auto comm = connect_tcp(rendezvous(3, 0, port));
    bad = exercise(*comm, seed);
  } catch (const std::exception& e) {
    error = e.what();
  }
  EXPECT_EQ(error, "");
  EXPECT_EQ(bad, 0);
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status)) << "a rank process died of a signal";
    if (WIFEXITED(status)) {
      EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong sums, 2: an error";
    }
  }
}

TEST(DistTcp, MissingRankTimesOutNamingIt) {
  const int port = free_port();
  const auto errors = run_ranks(2, [&](int r) { connect_tcp(rendezvous(3, r, port, 0.5)); });
  EXPECT_TRUE(contains(errors[0], "rank(s) 2 never connected")) << errors[0];
  EXPECT_TRUE(contains(errors[0], "127.0.0.1:" + std::to_string(port))) << errors[0];
  // Rank 1 was told why rank 0 gave up.
  EXPECT_TRUE(contains(errors[1], "refused this rank")) << errors[1];
  EXPECT_TRUE(contains(errors[1], "never connected")) << errors[1];
}

TEST(DistTcp, NoMasterTimesOutNamingTheAddress) {
  const int port = free_port();
  const auto start = std::chrono::steady_clock::now();
  try {
    connect_tcp(rendezvous(2, 1, port, 0.5));
    FAIL() << "connected to nobody";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "could not reach rank 0 at 127.0.0.1:" + std::to_string(port)))
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(DistTcp, WorldSizeMismatchIsRefused) {
  const int port = free_port();
  const auto errors =
      run_ranks(2, [&](int r) { connect_tcp(rendezvous(r == 0 ? 2 : 3, r, port, 5.0)); });
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(contains(errors[r], "expects 3 ranks but rank 0 expects 2")) << errors[r];
  }
}

TEST(DistTcp, DuplicateRankIsRefused) {
  const int port = free_port();
  const auto errors =
      run_ranks(3, [&](int r) { connect_tcp(rendezvous(3, r == 0 ? 0 : 1, port, 5.0)); });
  EXPECT_TRUE(contains(errors[0], "rank 1 claimed twice")) << errors[0];
}

TEST(DistTcp, DeadPeerMakesTheOthersThrow) {
  const int port = free_port();
  const auto errors = run_ranks(3, [&](int r) {
    auto comm = connect_tcp(rendezvous(3, r, port));
    if (r == 2) return;  // "dies": its sockets close with it
    std::vector<float> data(10, 1.0f);
    comm->all_reduce_sum(data.data(), data.size());
  });
  EXPECT_TRUE(contains(errors[0], "rank 2")) << errors[0];
  EXPECT_TRUE(contains(errors[0], "closed")) << errors[0];
  EXPECT_TRUE(contains(errors[1], "rank 0 failed")) << errors[1];
  EXPECT_EQ(errors[2], "");
}

TEST(DistTcp, StuckPeerTimesOutWithCollectiveTimeout) {
  const int port = free_port();
  std::atomic<bool> done{false};
  const auto errors = run_ranks(2, [&](int r) {
    Rendezvous rv = rendezvous(2, r, port);
    rv.collective_timeout_s = 0.3;
    auto comm = connect_tcp(rv);
    if (r == 1) {  // alive but never joins the barrier
      while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return;
    }
    try {
      comm->barrier();
    } catch (...) {
      done = true;
      throw;
    }
    done = true;
  });
  EXPECT_TRUE(contains(errors[0], "timed out")) << errors[0];
  EXPECT_TRUE(contains(errors[0], "rank 1")) << errors[0];
}

TEST(DistTcp, DifferentCollectivesAreAnError) {
  const int port = free_port();
  const auto errors = run_ranks(2, [&](int r) {
    auto comm = connect_tcp(rendezvous(2, r, port));
    if (r == 0) {
      comm->barrier();
    } else {
      float x = 1.0f;
      comm->all_reduce_sum(&x, 1);
    }
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(contains(errors[r], "rank 1 called all_reduce_sum while rank 0 called barrier"))
        << errors[r];
  }
}

TEST(DistTcp, RejectsBadRendezvous) {
  EXPECT_THROW(connect_tcp(rendezvous(2, 2, 29500)), Error);
  EXPECT_THROW(connect_tcp(rendezvous(2, -1, 29500)), Error);
  EXPECT_THROW(connect_tcp(rendezvous(2, 0, 0)), Error);
  EXPECT_THROW(connect_tcp(rendezvous(0, 0, 29500)), Error);
  auto single = connect_tcp(rendezvous(1, 0, 29500));  // no socket for a world of one
  float x = 2.5f;
  single->all_reduce_sum(&x, 1);
  EXPECT_EQ(x, 2.5f);
}

}  // namespace
}  // namespace mixserve::dist
