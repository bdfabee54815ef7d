#include "dist/launch_env.h"

#include <cstdlib>
#include <string>

#include "util/error.h"

namespace mixserve::dist {
namespace {

// An integer environment variable, or -1 when unset; throws when set but not a number.
int env_int(const std::function<const char*(const char*)>& getenv, const char* name) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  MIXSERVE_CHECK(*end == '\0' && x >= 0 && x < (1 << 24), "environment variable ", name, "=\"",
                 v, "\" is not a rank count / index");
  return static_cast<int>(x);
}

}  // namespace

std::optional<Rendezvous> launch_from_options(
    int nnodes, int node_rank, const std::string& master_addr, int master_port,
    const std::function<const char*(const char*)>& getenv_in) {
  const std::function<const char*(const char*)> getenv =
      getenv_in ? getenv_in : [](const char* n) -> const char* { return std::getenv(n); };
  MIXSERVE_CHECK(nnodes >= 1, "--nnodes ", nnodes, " must be at least 1");
  MIXSERVE_CHECK(master_port > 0 && master_port < 65536, "--master-port ", master_port,
                 " is not a TCP port (1..65535)");
  int mpi_size = env_int(getenv, "OMPI_COMM_WORLD_SIZE");
  int mpi_rank = env_int(getenv, "OMPI_COMM_WORLD_RANK");
  if (mpi_size < 0) {
    mpi_size = env_int(getenv, "PMI_SIZE");
    mpi_rank = env_int(getenv, "PMI_RANK");
  }
  Rendezvous rv;
  rv.master_addr = master_addr;
  rv.master_port = master_port;
  if (mpi_size > 1) {
    MIXSERVE_CHECK(mpi_rank >= 0 && mpi_rank < mpi_size, "mpirun gave rank ", mpi_rank,
                   " of ", mpi_size);
    MIXSERVE_CHECK(nnodes == 1 || nnodes == mpi_size, "--nnodes ", nnodes,
                   " disagrees with mpirun's ", mpi_size,
                   " processes; under mpirun leave --nnodes out");
    rv.world_size = mpi_size;
    rv.rank = mpi_rank;
    // Flags left at their defaults defer to the launcher's environment.
    const char* addr = getenv("MASTER_ADDR");
    if (master_addr == "127.0.0.1" && addr != nullptr && *addr != '\0') rv.master_addr = addr;
    const int port = env_int(getenv, "MASTER_PORT");
    if (master_port == 29500 && port > 0) rv.master_port = port;
    return rv;
  }
  if (nnodes == 1) {
    MIXSERVE_CHECK(node_rank == 0, "--node-rank ", node_rank, " needs --nnodes > 1");
    return std::nullopt;
  }
  MIXSERVE_CHECK(node_rank >= 0 && node_rank < nnodes, "--node-rank ", node_rank,
                 " is outside [0, ", nnodes, ") for --nnodes ", nnodes);
  rv.world_size = nnodes;
  rv.rank = node_rank;
  return rv;
}

}  // namespace mixserve::dist
