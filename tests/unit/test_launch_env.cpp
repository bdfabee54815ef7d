// launch_from_options: single-process runs, --nnodes launches, mpirun's environment, and the
// inconsistent combinations that must be errors.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "dist/launch_env.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

struct Env {
  std::map<std::string, std::string> vars;
  std::function<const char*(const char*)> fn() const {
    return [this](const char* n) -> const char* {
      auto it = vars.find(n);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

TEST(LaunchEnv, SingleProcess) {
  const Env env;
  EXPECT_FALSE(launch_from_options(1, 0, "127.0.0.1", 29500, env.fn()).has_value());
  EXPECT_THROW(launch_from_options(1, 1, "127.0.0.1", 29500, env.fn()), Error);
}

TEST(LaunchEnv, Nnodes) {
  const Env env;
  const auto rv = launch_from_options(2, 1, "10.0.0.5", 1234, env.fn());
  ASSERT_TRUE(rv.has_value());
  EXPECT_EQ(rv->world_size, 2);
  EXPECT_EQ(rv->rank, 1);
  EXPECT_EQ(rv->master_addr, "10.0.0.5");
  EXPECT_EQ(rv->master_port, 1234);
  EXPECT_THROW(launch_from_options(2, 2, "127.0.0.1", 29500, env.fn()), Error);
  EXPECT_THROW(launch_from_options(0, 0, "127.0.0.1", 29500, env.fn()), Error);
  EXPECT_THROW(launch_from_options(2, 0, "127.0.0.1", 0, env.fn()), Error);
}

TEST(LaunchEnv, Mpirun) {
  Env env;
  env.vars = {{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "3"},
              {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "4000"}};
  auto rv = launch_from_options(1, 0, "127.0.0.1", 29500, env.fn());
  ASSERT_TRUE(rv.has_value());
  EXPECT_EQ(rv->world_size, 4);
  EXPECT_EQ(rv->rank, 3);
  EXPECT_EQ(rv->master_addr, "node0");  // flags at their defaults defer to the environment
  EXPECT_EQ(rv->master_port, 4000);
  rv = launch_from_options(1, 0, "10.1.1.1", 5000, env.fn());
  EXPECT_EQ(rv->master_addr, "10.1.1.1");  // explicit flags win
  EXPECT_EQ(rv->master_port, 5000);
  EXPECT_THROW(launch_from_options(2, 0, "127.0.0.1", 29500, env.fn()), Error);  // 2 != 4
  env.vars = {{"PMI_SIZE", "2"}, {"PMI_RANK", "0"}};  // MPICH
  rv = launch_from_options(1, 0, "127.0.0.1", 29500, env.fn());
  ASSERT_TRUE(rv.has_value());
  EXPECT_EQ(rv->world_size, 2);
  EXPECT_EQ(rv->rank, 0);
  env.vars = {{"OMPI_COMM_WORLD_SIZE", "two"}};
  EXPECT_THROW(launch_from_options(1, 0, "127.0.0.1", 29500, env.fn()), Error);
  env.vars = {{"OMPI_COMM_WORLD_SIZE", "1"}, {"OMPI_COMM_WORLD_RANK", "0"}};  // mpirun -np 1
  EXPECT_FALSE(launch_from_options(1, 0, "127.0.0.1", 29500, env.fn()).has_value());
}

}  // namespace
}  // namespace mixserve::dist
