// Building the ranks of one model copy: N shards as threads of this process behind a
// DistributedBackend (CPU ranks, tests), or this process's one rank of a multi-process launch.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "dist/communicator.h"
#include "dist/sharding.h"

namespace mixserve::dist {

// Builds the shard backend of one rank; `comm` outlives the shard.
using ShardBuilder = std::function<std::unique_ptr<Backend>(const ShardSpec&, Communicator&)>;

// All parallel.tensor_parallel ranks in this process: ranks 1..N-1 build their shards in their
// own threads (in parallel with rank 0) and run run_worker; rank 0's shard is built here and
// returned inside a DistributedBackend. make_shard's errors (sizes that do not divide) are
// thrown before any thread starts; a rank's build error is thrown here, naming the rank.
std::unique_ptr<Backend> make_thread_parallel_backend(const ModelConfig& full,
                                                      const ParallelConfig& parallel,
                                                      const ShardBuilder& build);

// This process's ranks of a multi-process launch (comms: one per local rank, element 0 the
// lowest; each comm->size() ranks in all). Local ranks 1.. run run_worker in threads. If this
// process holds rank 0 it gets a DistributedBackend; otherwise its first rank runs run_worker
// here until rank 0 shuts the group down, and it gets nullptr (the caller then exits without
// starting an engine). Throws mixserve::Error when a rank fails or rank 0 goes away.
std::unique_ptr<Backend> run_process_ranks(const ModelConfig& full, const ParallelConfig& parallel,
                                           std::vector<std::unique_ptr<Communicator>> comms,
                                           const ShardBuilder& build);

}  // namespace mixserve::dist
