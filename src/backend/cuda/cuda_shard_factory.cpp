// make_cuda_shard_backend: one rank's CudaBackend of a tensor / expert parallel model, with the
// device communicator its ranks' placement allows (see cuda_shard_factory.h).
#include "backend/cuda/cuda_shard_factory.h"

#include <cstdlib>
#include <string>

#include "backend/cuda/nccl_communicator.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve {
namespace {

bool same_device_mode() {
  const char* env = std::getenv("MIXSERVE_TP_SAME_DEVICE");
  return env != nullptr && std::string(env) == "1";
}

// MIXSERVE_TP_REDUCE: the dtype the ranks' partial sums are all-reduced in.
bool reduce_in_bf16() {
  const char* env = std::getenv("MIXSERVE_TP_REDUCE");
  const std::string v = env != nullptr ? env : "";
  MIXSERVE_CHECK(v.empty() || v == "f32" || v == "bf16", "MIXSERVE_TP_REDUCE=", v,
                 ": expected f32 or bf16");
  return v == "bf16";
}

}  // namespace

std::unique_ptr<Backend> make_cuda_shard_backend(const BackendOptions& options,
                                                 const dist::ShardSpec& shard,
                                                 dist::Communicator* host, int device) {
  MIXSERVE_CHECK(host != nullptr && host->rank() == shard.rank && host->size() == shard.size,
                 "CUDA shard ", shard.rank, " of ", shard.size,
                 ": the host communicator must be this rank's (rank ",
                 host ? host->rank() : -1, " of ", host ? host->size() : 0, ")");
  cuda::CudaBackendOptions co = cuda_backend_options(options);
  co.shard = shard;
  co.device = device;
  co.tp_reduce_bf16 = reduce_in_bf16();
  if (shard.size > 1) {
    if (same_device_mode()) {
      // Every rank on device 0, each with its share of the memory; sums through host memory.
      co.device = 0;
      co.gpu_memory_fraction /= shard.size;
      co.comm = cuda::make_staged_communicator(*host);
    } else if (std::string why; cuda::nccl_available(&why)) {
      co.comm = cuda::make_nccl_communicator(*host, device);
    } else {
      log::warn("tensor parallel rank ", shard.rank, ": NCCL could not be loaded (", why,
                "); the ranks sum their partial results through host memory (slow)");
      co.comm = cuda::make_staged_communicator(*host);
    }
  }
  return make_cuda_backend_with(options, co);
}

}  // namespace mixserve
