#include "dist/parallel_backend.h"

#include <utility>
#include <vector>

#include "dist/distributed_backend.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::dist {

std::unique_ptr<Backend> make_thread_parallel_backend(const ModelConfig& full,
                                                      const ParallelConfig& parallel,
                                                      const ShardBuilder& build) {
  const int n = parallel.tensor_parallel;
  std::vector<ShardSpec> specs;
  for (int r = 0; r < n; ++r) specs.push_back(make_shard(full, parallel, r));

  std::vector<std::unique_ptr<Communicator>> comms = make_thread_group(n);
  // Declared before comm0 so that it is destroyed after it: a failing rank 0 first breaks the
  // group (the workers stop waiting), then the workers are joined.
  std::unique_ptr<LocalWorkers> workers;
  std::unique_ptr<Communicator> comm0 = std::move(comms[0]);
  comms.erase(comms.begin());
  workers = std::make_unique<LocalWorkers>(
      std::move(comms),
      [specs, build](Communicator& comm) { return build(specs[comm.rank()], comm); });
  std::unique_ptr<Backend> local;
  try {
    local = build(specs[0], *comm0);
  } catch (const std::exception& e) {
    throw_error("rank 0: ", e.what());
  }
  return std::make_unique<DistributedBackend>(full, std::move(local), std::move(comm0),
                                              std::move(workers));
}

std::unique_ptr<Backend> run_process_rank(const ModelConfig& full, const ParallelConfig& parallel,
                                          std::unique_ptr<Communicator> comm,
                                          const ShardBuilder& build) {
  MIXSERVE_CHECK(comm->size() == parallel.tensor_parallel, "--tensor-parallel ",
                 parallel.tensor_parallel, " but the launch has ", comm->size(),
                 " ranks (one rank per process): start as many processes as "
                 "--tensor-parallel says");
  const int rank = comm->rank();
  const ShardSpec spec = make_shard(full, parallel, rank);
  std::unique_ptr<Backend> shard = build(spec, *comm);
  if (rank == 0) {
    return std::make_unique<DistributedBackend>(full, std::move(shard), std::move(comm), nullptr);
  }
  log::info("rank ", rank, " of ", comm->size(), ": serving rank 0's steps on ", shard->name());
  run_worker(*shard, *comm);
  log::info("rank ", rank, ": shut down by rank 0");
  return nullptr;
}

}  // namespace mixserve::dist
