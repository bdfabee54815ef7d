#include "dist/distributed_backend.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "dist/command_codec.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::dist {
namespace {

RankInfo rank_info_of(const Backend& b) {
  RankInfo info;
  info.kv_bytes_per_token = b.kv_bytes_per_token();
  const KvCacheSpec offered = b.kv_cache_spec();
  info.offered_kv_blocks = offered.num_blocks;
  info.offered_block_size = offered.block_size;
  info.vocab_size = b.config().vocab_size;
  info.hidden_size = b.config().hidden_size;
  info.num_layers = b.config().num_hidden_layers;
  return info;
}

// Every rank sends its RankInfo to all (one broadcast per root); returns them in rank order.
std::vector<RankInfo> exchange_rank_info(const Backend& shard, Communicator& comm) {
  std::vector<RankInfo> infos(comm.size());
  for (int r = 0; r < comm.size(); ++r) {
    std::vector<uint8_t> bytes;
    if (r == comm.rank()) bytes = encode_rank_info(rank_info_of(shard));
    comm.broadcast(&bytes, r);
    infos[r] = decode_rank_info(bytes);
  }
  return infos;
}

void broadcast_command(Communicator& comm, const CommandMessage& m) {
  std::vector<uint8_t> bytes = encode_command(m);
  comm.broadcast(&bytes, 0);
}

}  // namespace

// ---- LocalWorkers -----------------------------------------------------------------------------

LocalWorkers::LocalWorkers(std::vector<std::unique_ptr<Communicator>> comms,
                           ShardFactory make_shard) {
  threads_.reserve(comms.size());
  for (std::unique_ptr<Communicator>& c : comms) {
    threads_.emplace_back([this, comm = std::move(c), make_shard]() mutable {
      const int rank = comm->rank();
      try {
        std::unique_ptr<Backend> shard = make_shard(*comm);
        run_worker(*shard, *comm);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu_);
        if (first_error_.empty()) first_error_ = "rank " + std::to_string(rank) + ": " + e.what();
      }
      // Dropping the communicator breaks the group: rank 0 stops waiting for this rank.
      comm.reset();
    });
  }
}

LocalWorkers::~LocalWorkers() {
  for (std::thread& t : threads_) t.join();
}

std::string LocalWorkers::first_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return first_error_;
}

// ---- DistributedBackend -----------------------------------------------------------------------

DistributedBackend::DistributedBackend(const ModelConfig& full, std::unique_ptr<Backend> local,
                                       std::unique_ptr<Communicator> comm,
                                       std::unique_ptr<LocalWorkers> workers)
    : config_(full),
      workers_(std::move(workers)),
      comm_(std::move(comm)),
      local_(std::move(local)) {
  MIXSERVE_CHECK(comm_ && local_ && comm_->rank() == 0,
                 "DistributedBackend: needs rank 0's shard and communicator");
  std::vector<RankInfo> infos;
  guarded("starting the ranks", [&] { infos = exchange_rank_info(*local_, *comm_); });
  const RankInfo& first = infos[0];
  kv_bytes_per_token_ = 0;
  int64_t offered_tokens = 0;
  for (size_t r = 0; r < infos.size(); ++r) {
    const RankInfo& i = infos[r];
    MIXSERVE_CHECK(i.vocab_size == first.vocab_size && i.hidden_size == first.hidden_size &&
                       i.num_layers == first.num_layers,
                   "rank ", r, " loaded a different model (vocab ", i.vocab_size, ", hidden ",
                   i.hidden_size, ", ", i.num_layers, " layers) than rank 0 (vocab ",
                   first.vocab_size, ", hidden ", first.hidden_size, ", ", first.num_layers,
                   " layers); pass the same --model to every rank");
    kv_bytes_per_token_ = std::max<size_t>(kv_bytes_per_token_, i.kv_bytes_per_token);
    // A rank that offers no size (the CPU) leaves the choice to the others / the engine.
    const int64_t tokens = int64_t{i.offered_kv_blocks} * i.offered_block_size;
    if (tokens > 0) offered_tokens = offered_tokens > 0 ? std::min(offered_tokens, tokens) : tokens;
  }
  offered_.block_size = first.offered_block_size > 0 ? first.offered_block_size : 16;
  offered_.num_blocks = static_cast<int32_t>(offered_tokens / offered_.block_size);
}

DistributedBackend::~DistributedBackend() {
  if (!broken_.empty()) return;
  try {
    CommandMessage m;
    m.command = Command::kShutdown;
    broadcast_command(*comm_, m);
  } catch (const std::exception& e) {
    log::warn("distributed backend: shutdown of the workers failed: ", e.what());
  }
}

std::string DistributedBackend::name() const {
  return local_->name() + " x" + std::to_string(comm_->size()) + " ranks";
}

void DistributedBackend::check_usable() const {
  MIXSERVE_CHECK(broken_.empty(), "distributed backend: a rank failed earlier (", broken_,
                 "); restart all ranks");
}

void DistributedBackend::guarded(const char* what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (workers_) {
      const std::string worker = workers_->first_error();
      if (!worker.empty()) msg = worker + " (rank 0: " + msg + ")";
    }
    broken_ = msg;
    throw_error("distributed backend: ", what, " failed: ", msg);
  }
}

void DistributedBackend::allocate_kv_cache(const KvCacheSpec& spec) {
  check_usable();
  MIXSERVE_CHECK(spec.num_blocks > 0 && spec.block_size > 0, "distributed backend: KV cache "
                 "needs num_blocks > 0 and block_size > 0 (got ", spec.num_blocks, " and ",
                 spec.block_size, ")");
  guarded("allocating the KV cache", [&] {
    CommandMessage m;
    m.command = Command::kAllocateKvCache;
    m.kv = spec;
    broadcast_command(*comm_, m);
    local_->allocate_kv_cache(spec);
  });
  allocated_ = true;
}

KvCacheSpec DistributedBackend::kv_cache_spec() const {
  return allocated_ ? local_->kv_cache_spec() : offered_;
}

void DistributedBackend::check_plan(const BatchPlan& plan) const {
  check_usable();
  MIXSERVE_CHECK(allocated_, "distributed backend: forward() before allocate_kv_cache()");
  const KvCacheSpec kv = local_->kv_cache_spec();
  plan.validate(kv.block_size, kv.num_blocks);
  for (int32_t id : plan.token_ids) {
    MIXSERVE_CHECK(id >= 0 && id < config_.vocab_size, "distributed backend: token id ", id,
                   " outside the vocabulary [0, ", config_.vocab_size, ")");
  }
}

void DistributedBackend::forward(const BatchPlan& plan, std::span<float> logits_out) {
  check_plan(plan);
  const size_t need = plan.logits_rows.size() * size_t(config_.vocab_size);
  MIXSERVE_CHECK(logits_out.size() >= need, "distributed backend: logits buffer holds ",
                 logits_out.size(), " floats, the plan needs ", need);
  guarded("forward", [&] {
    CommandMessage m;
    m.command = Command::kForward;
    m.plan = plan;
    broadcast_command(*comm_, m);
    local_->forward(plan, logits_out);
  });
}

void DistributedBackend::forward_and_sample(const BatchPlan& plan, const SamplingBatch& batch,
                                            SampledTokens* out) {
  check_plan(plan);
  MIXSERVE_CHECK(batch.rows.size() == plan.logits_rows.size(), "distributed backend: ",
                 batch.rows.size(), " sampling rows for ", plan.logits_rows.size(),
                 " logits rows");
  guarded("forward_and_sample", [&] {
    CommandMessage m;
    m.command = Command::kForwardAndSample;
    m.plan = plan;
    m.sampling = batch;
    broadcast_command(*comm_, m);
    local_->forward_and_sample(plan, batch, out);
  });
}

// ---- workers ----------------------------------------------------------------------------------

void run_worker(Backend& shard, Communicator& comm) {
  MIXSERVE_CHECK(comm.rank() != 0, "run_worker: rank 0 drives the workers; it does not run one");
  exchange_rank_info(shard, comm);
  std::vector<float> logits;
  SampledTokens sampled;
  for (;;) {
    std::vector<uint8_t> bytes;
    comm.broadcast(&bytes, 0);
    const CommandMessage m = decode_command(bytes);
    switch (m.command) {
      case Command::kShutdown:
        return;
      case Command::kAllocateKvCache:
        shard.allocate_kv_cache(m.kv);
        break;
      case Command::kForward:
        // Sized as on rank 0 so that any shard may write it; only rank 0's is read.
        logits.resize(m.plan.logits_rows.size() * size_t(shard.config().vocab_size));
        shard.forward(m.plan, logits);
        break;
      case Command::kForwardAndSample:
        shard.forward_and_sample(m.plan, m.sampling, &sampled);
        break;
    }
  }
}

}  // namespace mixserve::dist
