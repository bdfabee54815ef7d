// How a process learns its place among the ranks of a tensor / expert parallel run.
//
// N ranks (--tensor-parallel N) run in M processes (nodes), N/M ranks per process as threads:
// process i runs ranks [i*N/M, (i+1)*N/M). M and i come from, in this order:
//   1. flags: --nnodes M --node-rank i (--master-addr A --master-port P),
//   2. Open MPI (`mpirun -np M`): OMPI_COMM_WORLD_SIZE / OMPI_COMM_WORLD_RANK, and
//      OMPI_COMM_WORLD_LOCAL_RANK for the GPUs of several processes on one host,
//   3. torchrun-style variables: WORLD_SIZE / RANK (LOCAL_RANK),
//   4. nothing: one process runs all N ranks as threads.
// Rank 0's address: the flags, else MASTER_ADDR / MASTER_PORT, else 127.0.0.1:29500.
// Functions take the environment as a map so that tests can pass their own.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace mixserve::dist {

using EnvMap = std::map<std::string, std::string>;

// The process's environment (environ) as a map.
EnvMap current_env();

// What the command line said; unset fields are 0 / -1 / "".
struct LaunchFlags {
  int tensor_parallel = 1;  // N, all ranks of the run
  int nnodes = 0;           // M; 0: not given
  int node_rank = -1;       // i; -1: not given
  std::string master_addr;  // "": not given
  int master_port = 0;      // 0: not given
  double timeout_s = 300.0;
};

struct LaunchInfo {
  int world_size = 1;          // N ranks in all processes together
  int num_processes = 1;       // M
  int process_index = 0;       // i, this process
  int rank_base = 0;           // this process runs ranks [rank_base, rank_base + local_ranks)
  int local_ranks = 1;         // N / M, as threads
  int first_device = 0;        // CUDA device of local rank 0; local rank t uses first_device + t
  bool multi_process = false;  // M > 1: ranks meet over TCP (connect_tcp), else threads
  Rendezvous rv;               // world_size N, master address / port / timeout; rank set per thread
  std::string source;          // where M and i came from, for logs: "--nnodes", "mpirun", ...

  // rv with rank = rank_base + local_index.
  Rendezvous rendezvous_for(int local_index) const;
  // One line for logs: "ranks 2-3 of 4 in process 1 of 2 (--nnodes), rank 0 at 10.0.0.1:29500".
  std::string describe() const;
};

// Throws mixserve::Error naming the flag or variable at fault: --node-rank without --nnodes or
// outside [0, M), N not divisible by M, a malformed number, --node-rank under mpirun.
LaunchInfo resolve_launch(const LaunchFlags& flags, const EnvMap& env);

// The communicators of this process's local ranks, element t for rank rank_base + t: a thread
// group when all ranks are in this process, else one connect_tcp per local rank (made on
// parallel threads, since rank 0 waits in connect_tcp until every rank has joined). Throws the
// first rank's error if any failed.
std::vector<std::unique_ptr<Communicator>> connect_local_ranks(const LaunchInfo& info);

}  // namespace mixserve::dist
