// Building the ranks of one model copy: N shards as threads of this process behind a
// DistributedBackend (CPU ranks, tests), or this process's one rank of a multi-process launch.
#pragma once

#include <functional>
#include <memory>

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

// This process's rank of a multi-process group (comm: its end, comm->size() ranks). Rank 0
// gets a DistributedBackend; any other rank runs run_worker until rank 0 shuts it down and
// gets nullptr (the caller then exits without starting an engine). Throws mixserve::Error
// when a rank fails or rank 0 goes away.
std::unique_ptr<Backend> run_process_rank(const ModelConfig& full, const ParallelConfig& parallel,
                                          std::unique_ptr<Communicator> comm,
                                          const ShardBuilder& build);

}  // namespace mixserve::dist
