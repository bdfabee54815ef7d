// Where this process's rank comes from in a multi-process launch: the --nnodes / --node-rank /
// --master-addr / --master-port flags (one rank per process, as torchrun's single-process-per-
// node form), or the environment mpirun gives each process (Open MPI: OMPI_COMM_WORLD_SIZE /
// OMPI_COMM_WORLD_RANK; MPICH / Hydra: PMI_SIZE / PMI_RANK). Under mpirun the rendezvous
// address is --master-addr / --master-port, else MASTER_ADDR / MASTER_PORT, else
// 127.0.0.1:29500.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "dist/communicator.h"

namespace mixserve::dist {

// nullopt for a single-process run. Throws mixserve::Error for inconsistent values (a node rank
// outside [0, nnodes), --nnodes disagreeing with mpirun's world size, a bad port).
// `getenv` is std::getenv unless a test passes its own.
std::optional<Rendezvous> launch_from_options(
    int nnodes, int node_rank, const std::string& master_addr, int master_port,
    const std::function<const char*(const char*)>& getenv = nullptr);

}  // namespace mixserve::dist
