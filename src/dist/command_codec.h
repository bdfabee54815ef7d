// The commands rank 0 sends its workers (DistributedBackend -> run_worker), as bytes for
// Communicator::broadcast: the Backend calls every rank must mirror, with their arguments.
//
// Encoding: a magic byte, a version byte, the command, then the fields in order; integers and
// the POD records of SamplingBatch are stored in the host's byte order (all ranks of one model
// run on the same architecture), vectors as a uint64 count then their elements. decode_command
// throws mixserve::Error on anything malformed (truncated, trailing bytes, unknown command),
// so a corrupt message stops a worker instead of running a wrong step.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/batch_plan.h"
#include "backend/sampling_batch.h"

namespace mixserve::dist {

enum class Command : uint8_t {
  kAllocateKvCache = 1,  // kv
  kForward = 2,          // plan
  kForwardAndSample = 3, // plan, sampling
  kShutdown = 4,
};

struct CommandMessage {
  Command command = Command::kShutdown;
  KvCacheSpec kv;
  BatchPlan plan;
  SamplingBatch sampling;
};

std::vector<uint8_t> encode_command(const CommandMessage& message);
CommandMessage decode_command(const std::vector<uint8_t>& bytes);

// What each rank tells the others once, before the first command: its per-rank KV bytes, the
// cache it would offer (Backend::kv_cache_spec before allocation), and the model's shape, so
// that ranks that loaded different models fail at once.
struct RankInfo {
  uint64_t kv_bytes_per_token = 0;
  int32_t offered_kv_blocks = 0;
  int32_t offered_block_size = 0;
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t num_layers = 0;
};

std::vector<uint8_t> encode_rank_info(const RankInfo& info);
RankInfo decode_rank_info(const std::vector<uint8_t>& bytes);

}  // namespace mixserve::dist
