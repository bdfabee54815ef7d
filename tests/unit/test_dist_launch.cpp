// resolve_launch: flags, mpirun and torchrun variables, defaults and the inconsistent
// combinations; connect_local_ranks joining two "nodes" of one machine.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "dist/launch.h"
#include "dist_test_support.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

LaunchFlags tp(int n) {
  LaunchFlags f;
  f.tensor_parallel = n;
  return f;
}

std::string error_of(const LaunchFlags& flags, const EnvMap& env) {
  try {
    resolve_launch(flags, env);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(DistLaunch, OneProcessRunsAllRanksAsThreads) {
  const LaunchInfo info = resolve_launch(tp(4), {});
  EXPECT_EQ(info.world_size, 4);
  EXPECT_EQ(info.num_processes, 1);
  EXPECT_EQ(info.rank_base, 0);
  EXPECT_EQ(info.local_ranks, 4);
  EXPECT_EQ(info.first_device, 0);
  EXPECT_FALSE(info.multi_process);
  EXPECT_EQ(info.rv.master_addr, "127.0.0.1");
  EXPECT_EQ(info.rv.master_port, 29500);
  EXPECT_EQ(info.describe(), "ranks 0-3 of 4 as threads of this process");
}

TEST(DistLaunch, NnodesSplitsRanksByNode) {
  LaunchFlags f = tp(8);
  f.nnodes = 4;
  f.node_rank = 2;
  f.master_addr = "10.0.0.1";
  f.master_port = 31000;
  const LaunchInfo info = resolve_launch(f, {{"MASTER_ADDR", "ignored"}});
  EXPECT_EQ(info.num_processes, 4);
  EXPECT_EQ(info.process_index, 2);
  EXPECT_EQ(info.rank_base, 4);
  EXPECT_EQ(info.local_ranks, 2);
  EXPECT_EQ(info.first_device, 0);  // one process per node: its GPUs from 0
  EXPECT_TRUE(info.multi_process);
  EXPECT_EQ(info.rv.world_size, 8);
  EXPECT_EQ(info.rv.master_addr, "10.0.0.1");
  EXPECT_EQ(info.rv.master_port, 31000);
  EXPECT_EQ(info.rendezvous_for(1).rank, 5);
  EXPECT_THROW(info.rendezvous_for(2), Error);
  EXPECT_EQ(info.describe(),
            "ranks 4-5 of 8 in process 2 of 4 (--nnodes), rank 0 at 10.0.0.1:31000");
}

TEST(DistLaunch, MasterAddressFromEnvironment) {
  LaunchFlags f = tp(2);
  f.nnodes = 2;
  f.node_rank = 1;
  const LaunchInfo info = resolve_launch(f, {{"MASTER_ADDR", "node7"}, {"MASTER_PORT", "4242"}});
  EXPECT_EQ(info.rv.master_addr, "node7");
  EXPECT_EQ(info.rv.master_port, 4242);
  EXPECT_EQ(info.rank_base, 1);
}

TEST(DistLaunch, Mpirun) {
  const EnvMap env = {{"OMPI_COMM_WORLD_SIZE", "2"},
                      {"OMPI_COMM_WORLD_RANK", "1"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}};
  const LaunchInfo info = resolve_launch(tp(4), env);
  EXPECT_EQ(info.num_processes, 2);
  EXPECT_EQ(info.process_index, 1);
  EXPECT_EQ(info.rank_base, 2);
  EXPECT_EQ(info.local_ranks, 2);
  EXPECT_EQ(info.first_device, 2);  // second process on this host: GPUs 2 and 3
  EXPECT_EQ(info.source, "mpirun");
  EXPECT_TRUE(info.multi_process);
  // Matching --nnodes is allowed; --node-rank is not.
  LaunchFlags f = tp(4);
  f.nnodes = 2;
  EXPECT_EQ(resolve_launch(f, env).rank_base, 2);
  f.node_rank = 0;
  EXPECT_NE(error_of(f, env).find("leave out --node-rank"), std::string::npos);
  f.node_rank = -1;
  f.nnodes = 4;
  EXPECT_NE(error_of(f, env).find("disagrees with mpirun's OMPI_COMM_WORLD_SIZE=2"),
            std::string::npos);
}

TEST(DistLaunch, Torchrun) {
  const LaunchInfo info = resolve_launch(tp(2), {{"WORLD_SIZE", "2"},
                                                 {"RANK", "0"},
                                                 {"LOCAL_RANK", "0"},
                                                 {"MASTER_ADDR", "host0"},
                                                 {"MASTER_PORT", "29400"}});
  EXPECT_EQ(info.source, "torchrun");
  EXPECT_EQ(info.local_ranks, 1);
  EXPECT_EQ(info.rank_base, 0);
  EXPECT_EQ(info.rv.master_addr, "host0");
  EXPECT_EQ(info.rv.master_port, 29400);
  EXPECT_EQ(info.describe(), "rank 0 of 2 in process 0 of 2 (torchrun), rank 0 at host0:29400");
  // mpirun's variables win over torchrun's.
  EXPECT_EQ(resolve_launch(tp(2), {{"WORLD_SIZE", "2"},
                                   {"RANK", "1"},
                                   {"OMPI_COMM_WORLD_SIZE", "1"},
                                   {"OMPI_COMM_WORLD_RANK", "0"}})
                .num_processes,
            1);
}

TEST(DistLaunch, InconsistentCombinationsNameTheFault) {
  LaunchFlags f = tp(4);
  f.nnodes = 2;
  EXPECT_NE(error_of(f, {}).find("needs --node-rank"), std::string::npos);
  f.node_rank = 2;
  EXPECT_NE(error_of(f, {}).find("--node-rank 2 must be below --nnodes 2"), std::string::npos);
  f.nnodes = 3;
  f.node_rank = 0;
  EXPECT_NE(error_of(f, {}).find("cannot be split evenly over 3 processes"), std::string::npos);
  LaunchFlags g = tp(4);
  g.node_rank = 1;
  EXPECT_NE(error_of(g, {}).find("needs --nnodes"), std::string::npos);
  EXPECT_NE(error_of(tp(0), {}).find("--tensor-parallel 0"), std::string::npos);
  EXPECT_NE(error_of(tp(2), {{"MASTER_PORT", "http"}}).find("MASTER_PORT=\"http\""),
            std::string::npos);
  EXPECT_NE(error_of(tp(2), {{"MASTER_PORT", "70000"}}).find("outside [1, 65535]"),
            std::string::npos);
  EXPECT_NE(error_of(tp(2), {{"WORLD_SIZE", "2"}}).find("RANK is not"), std::string::npos);
  EXPECT_NE(error_of(tp(2), {{"WORLD_SIZE", "2"}, {"RANK", "2"}}).find("must be below"),
            std::string::npos);
  EXPECT_NE(error_of(tp(3), {{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "0"}})
                .find("from mpirun"),
            std::string::npos);
}

TEST(DistLaunch, CurrentEnvReadsTheProcessEnvironment) {
  ::setenv("MIXSERVE_TEST_LAUNCH_VAR", "a=b", 1);
  EXPECT_EQ(current_env()["MIXSERVE_TEST_LAUNCH_VAR"], "a=b");
  ::unsetenv("MIXSERVE_TEST_LAUNCH_VAR");
}

// Two "nodes" of two ranks each (threads here) find each other and reduce exactly.
TEST(DistLaunch, ConnectLocalRanksAcrossTwoNodes) {
  const uint64_t seed = dist_test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int port = dist_test::free_port();
  std::vector<std::vector<std::unique_ptr<Communicator>>> nodes(2);
  const auto errors = dist_test::run_ranks(2, [&](int node) {
    LaunchFlags f = tp(4);
    f.nnodes = 2;
    f.node_rank = node;
    f.master_port = port;
    f.timeout_s = 20;
    nodes[node] = connect_local_ranks(resolve_launch(f, {}));
  });
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  std::atomic<int> bad{0};
  dist_test::run_ranks(4, [&](int r) {
    Communicator& comm = *nodes[r / 2][r % 2];
    EXPECT_EQ(comm.rank(), r);
    std::vector<float> data = dist_test::inputs(seed, 0, r, 1000);
    comm.all_reduce_sum(data.data(), data.size());
    if (data != dist_test::expected_sum(seed, 0, 4, 1000)) ++bad;
  });
  EXPECT_EQ(bad.load(), 0);
  // One process: a thread group of all ranks.
  EXPECT_EQ(connect_local_ranks(resolve_launch(tp(3), {})).size(), 3u);
}

}  // namespace
}  // namespace mixserve::dist
