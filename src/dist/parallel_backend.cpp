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

std::unique_ptr<Backend> run_process_ranks(const ModelConfig& full, const ParallelConfig& parallel,
                                           std::vector<std::unique_ptr<Communicator>> comms,
                                           const ShardBuilder& build) {
  MIXSERVE_CHECK(!comms.empty() && comms[0]->size() == parallel.tensor_parallel,
                 "--tensor-parallel ", parallel.tensor_parallel, " but the launch has ",
                 comms.empty() ? 0 : comms[0]->size(), " ranks");
  std::unique_ptr<Communicator> first = std::move(comms[0]);
  comms.erase(comms.begin());
  const int rank = first->rank();
  // Declared before `first` is used: destroyed after it, so that a failing rank of this
  // process first breaks the group, then the other local ranks are joined.
  std::unique_ptr<LocalWorkers> workers;
  if (!comms.empty()) {
    workers = std::make_unique<LocalWorkers>(
        std::move(comms), [full, parallel, build](Communicator& comm) {
          return build(make_shard(full, parallel, comm.rank()), comm);
        });
  }
  std::unique_ptr<Backend> shard = build(make_shard(full, parallel, rank), *first);
  if (rank == 0) {
    return std::make_unique<DistributedBackend>(full, std::move(shard), std::move(first),
                                                std::move(workers));
  }
  log::info("rank ", rank, " of ", first->size(), ": serving rank 0's steps on ", shard->name());
  run_worker(*shard, *first);
  log::info("rank ", rank, ": shut down by rank 0");
  return nullptr;
}

}  // namespace mixserve::dist
