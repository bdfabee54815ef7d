// DistributedBackend: the Backend the engine sees when N ranks share the model (tensor /
// expert parallelism). It lives on rank 0, owns rank 0's shard and communicator, and mirrors
// every call that all ranks must make (allocate_kv_cache, forward, forward_and_sample) to the
// workers: the call is encoded (command_codec.h), broadcast, then run on rank 0's shard; the
// workers (run_worker) run the same call on theirs, and the shards' collectives meet.
//
// Only rank 0's logits / sampled tokens are used; workers run forward_and_sample with the same
// arguments so that every rank takes the same code path, and discard the result.
//
// Failure: a worker that fails exits its loop and drops its communicator, which makes rank 0's
// pending collective throw (the thread group breaks, a TCP peer closes) instead of hanging;
// rank 0 then reports the error and refuses further steps. Plans are validated on rank 0 before
// they are broadcast, so a bad plan never reaches the workers.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "dist/communicator.h"

namespace mixserve::dist {

// Ranks 1..N-1 as threads of this process, each building its own shard and running
// run_worker on it. The destructor joins them (destroy rank 0's communicator first, or send
// the shutdown command, so that they return).
class LocalWorkers {
 public:
  // Builds the shard of `comm.rank()`, in that rank's thread.
  using ShardFactory = std::function<std::unique_ptr<Backend>(Communicator& comm)>;

  // comms: the communicators of ranks 1..N-1 (rank 0's stays with the caller).
  LocalWorkers(std::vector<std::unique_ptr<Communicator>> comms, ShardFactory make_shard);
  ~LocalWorkers();
  LocalWorkers(const LocalWorkers&) = delete;
  LocalWorkers& operator=(const LocalWorkers&) = delete;

  // The first error a worker thread reported ("" when none has), for rank 0's message.
  std::string first_error() const;

 private:
  mutable std::mutex mu_;
  std::string first_error_;
  std::vector<std::thread> threads_;
};

class DistributedBackend : public Backend {
 public:
  // full: the whole model's config (what the engine sees). local: rank 0's shard, built with
  // comm (rank 0 of comm->size()). workers: the thread-mode workers, or null when the workers
  // are other processes. Exchanges RankInfo with every worker (so the workers must be
  // running run_worker); throws mixserve::Error when a rank failed to start or loaded a
  // different model.
  DistributedBackend(const ModelConfig& full, std::unique_ptr<Backend> local,
                     std::unique_ptr<Communicator> comm, std::unique_ptr<LocalWorkers> workers);
  // Sends the shutdown command (workers return from run_worker) unless a rank failed.
  ~DistributedBackend() override;

  const ModelConfig& config() const override { return config_; }
  std::string name() const override;
  // Per rank: the largest of the ranks' (equal under even sharding).
  size_t kv_bytes_per_token() const override { return kv_bytes_per_token_; }
  void allocate_kv_cache(const KvCacheSpec& spec) override;
  // Before allocation: the smallest cache any rank offers, so that every rank can hold it.
  KvCacheSpec kv_cache_spec() const override;
  void forward(const BatchPlan& plan, std::span<float> logits_out) override;
  bool supports_device_sampling() const override { return local_->supports_device_sampling(); }
  void forward_and_sample(const BatchPlan& plan, const SamplingBatch& batch,
                          SampledTokens* out) override;

  int world_size() const { return comm_->size(); }

 private:
  // Runs fn (broadcast + local call); on failure marks the group broken and rethrows with the
  // workers' error attached.
  void guarded(const char* what, const std::function<void()>& fn);
  void check_usable() const;
  void check_plan(const BatchPlan& plan) const;

  ModelConfig config_;
  // Destruction order matters: local_ (uses comm_), then comm_ (breaks a thread group), then
  // workers_ (joins threads that have returned by then).
  std::unique_ptr<LocalWorkers> workers_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Backend> local_;
  size_t kv_bytes_per_token_ = 0;
  KvCacheSpec offered_;
  bool allocated_ = false;
  std::string broken_;  // non-empty: why no further step can run
};

// A worker rank's loop: exchanges RankInfo, then runs the commands rank 0 broadcasts on
// `shard` until the shutdown command (returns normally). Throws mixserve::Error when the
// communicator fails (rank 0 died or closed) or a command fails on this rank.
void run_worker(Backend& shard, Communicator& comm);

}  // namespace mixserve::dist
