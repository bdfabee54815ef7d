// CudaBackend as one rank's shard of a tensor / expert parallel model (dist/sharding.h): the
// all-reduce of the partial sums, the CUDA graph rule, and the expert-parallel MoE routing.
//
// Shapes: T = tokens of the step, H = hidden, K = top-k, E = the model's experts, El = the
// experts this rank holds (E unless expert parallel).
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/moe_expert_parallel.h"
#include "backend/cuda/nccl_communicator.h"
#include "backend/cuda/tp_reduce.h"
#include "util/error.h"

namespace mixserve::cuda {

void CudaBackend::check_shard() const {
  const dist::ShardSpec& s = options_.shard;
  if (s.size <= 1) return;
  MIXSERVE_CHECK(options_.comm != nullptr, "CUDA backend: shard ", s.rank, " of ", s.size,
                 " has no device communicator (make_cuda_shard_backend creates one)");
  MIXSERVE_CHECK(options_.comm->rank() == s.rank && options_.comm->size() == s.size,
                 "CUDA backend: shard ", s.rank, " of ", s.size, " was given the communicator of rank ",
                 options_.comm->rank(), " of ", options_.comm->size());
  if (s.expert_parallel && config_.moe) {
    MIXSERVE_CHECK(s.num_experts > 0 && s.expert_begin >= 0 &&
                       s.expert_begin + s.num_experts <= config_.num_local_experts,
                   "CUDA backend: shard ", s.rank, " holds experts [", s.expert_begin, ", ",
                   s.expert_begin + s.num_experts, ") of ", config_.num_local_experts);
  }
}

std::string CudaBackend::shard_label() const {
  const dist::ShardSpec& s = options_.shard;
  if (s.size <= 1) return "";
  return std::string(s.expert_parallel ? ", ep " : ", tp ") + std::to_string(s.rank) + "/" +
         std::to_string(s.size);
}

void CudaBackend::all_reduce_delta(int T) {
  if (options_.shard.size <= 1) return;
  const size_t n = size_t(T) * config_.hidden_size;
  comm_timer_.before(stream_);
  if (options_.tp_reduce_bf16) {
    MIXSERVE_CUDA_CHECK(round_to_bf16(ws_.delta, ws_.delta_bf16, n, stream_));
    options_.comm->all_reduce_sum(ws_.delta_bf16, n, DType::kBF16, stream_);
    MIXSERVE_CUDA_CHECK(widen_bf16(ws_.delta_bf16, ws_.delta, n, stream_));
  } else {
    options_.comm->all_reduce_sum(ws_.delta, n, DType::kF32, stream_);
  }
  comm_timer_.after(stream_);
}

bool CudaBackend::graphs_allowed() const {
  if (options_.enforce_eager) return false;
  // A host-staged all-reduce synchronizes the stream: it cannot be captured.
  return options_.shard.size <= 1 || options_.comm->capturable();
}

int CudaBackend::local_experts() const {
  const dist::ShardSpec& s = options_.shard;
  return s.size > 1 && s.expert_parallel ? s.num_experts : config_.num_local_experts;
}

int CudaBackend::localize_experts(int T) {
  const dist::ShardSpec& s = options_.shard;
  if (s.size <= 1 || !s.expert_parallel) return config_.num_local_experts;
  MIXSERVE_CUDA_CHECK(moe_localize_experts(ws_.experts, T * config_.num_experts_per_tok,
                                           s.expert_begin, s.num_experts, stream_));
  return s.num_experts + 1;
}

void CudaBackend::combine_experts(int T) {
  const int K = config_.num_experts_per_tok, H = config_.hidden_size;
  const dist::ShardSpec& s = options_.shard;
  if (s.size <= 1 || !s.expert_parallel) {
    MIXSERVE_CUDA_CHECK(moe_combine(ws_.expert_out, ws_.experts, ws_.expert_weights, ws_.pair_pos,
                                    T, K, H, ws_.delta, stream_));
    return;
  }
  MIXSERVE_CUDA_CHECK(moe_combine_local(ws_.expert_out, ws_.experts, ws_.expert_weights,
                                        ws_.pair_pos, T, K, H, s.num_experts, ws_.delta, stream_));
}

}  // namespace mixserve::cuda
