// The CUDA backend as one rank of a tensor / expert parallel model (dist/sharding.h), for the
// distributed backend's factory, and the option conversion it shares with make_cuda_backend.
#pragma once

#include <memory>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/factory.h"
#include "dist/communicator.h"
#include "dist/sharding.h"

namespace mixserve {

// --dtype, --quantization, ... of a command as CudaBackendOptions (cuda_backend_factory.cpp).
cuda::CudaBackendOptions cuda_backend_options(const BackendOptions& options);
// The model of options.model (checkpoint or synthetic:PRESET) with those options.
std::unique_ptr<cuda::CudaBackend> make_cuda_backend_with(const BackendOptions& options,
                                                          const cuda::CudaBackendOptions& co);

// Rank shard.rank's backend on GPU `device`, its partial sums all-reduced through NCCL
// (bootstrapped over `host`, which must outlive the backend) when the ranks have GPUs of their
// own. With MIXSERVE_TP_SAME_DEVICE=1 every rank runs on device 0 and sums through host memory
// (the staged communicator: a test mode, one GPU for several ranks, each given
// 1/size of --gpu-memory-fraction); the same, with a warning, when NCCL cannot be loaded.
std::unique_ptr<Backend> make_cuda_shard_backend(const BackendOptions& options,
                                                 const dist::ShardSpec& shard,
                                                 dist::Communicator* host, int device);

}  // namespace mixserve
