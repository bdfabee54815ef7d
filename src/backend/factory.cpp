#include "backend/factory.h"

#include <omp.h>

#include <algorithm>
#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "backend/device.h"
#include "model/presets.h"
#include "dist/launch.h"
#include "dist/parallel_backend.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve {

#ifdef MIXSERVE_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);  // backend/cuda/
// One rank's shard on `device`, its collectives bootstrapped over `host` (backend/cuda/).
std::unique_ptr<Backend> make_cuda_shard_backend(const BackendOptions& options,
                                                 const dist::ShardSpec& shard,
                                                 dist::Communicator* host, int device);
#endif

dist::LaunchInfo launch_info(const BackendOptions& o) {
  dist::LaunchFlags f;
  f.tensor_parallel = o.tensor_parallel;
  f.nnodes = o.nnodes;
  f.node_rank = o.node_rank;
  f.master_addr = o.master_addr;
  f.master_port = o.master_port;
  return dist::resolve_launch(f, dist::current_env());
}

namespace {

std::unique_ptr<Backend> create_parallel_backend(const BackendOptions& o, bool use_cuda,
                                                 const dist::LaunchInfo& launch) {
  const dist::ParallelConfig parallel{o.tensor_parallel, o.expert_parallel};
  const std::string prefix = "synthetic:";
  const bool synthetic = o.model.rfind(prefix, 0) == 0;
  const ModelConfig full =
      synthetic ? preset_from_spec(o.model.substr(prefix.size()))
                : ModelConfig::from_file(std::filesystem::path(o.model) / "config.json");
  // Ranks that share this process share its cores.
  const int ranks_here = launch.local_ranks;
  const int threads = o.num_threads > 0 ? o.num_threads
                                        : std::max(1, omp_get_max_threads() / ranks_here);
  dist::ShardBuilder build;
  if (use_cuda) {
#ifdef MIXSERVE_HAVE_CUDA
    // One GPU per rank: local rank t of this process takes device first_device + t (several
    // processes on one host under mpirun get disjoint devices), modulo the GPUs it sees.
    // MIXSERVE_TP_SAME_DEVICE=1 puts every rank on device 0 (tests on one GPU).
    const int gpus = std::max(1, cuda_device_count());
    const int first_device = launch.first_device, rank_base = launch.rank_base;
    build = [&o, gpus, first_device, rank_base](const dist::ShardSpec& s,
                                                dist::Communicator& comm) {
      return make_cuda_shard_backend(o, s, &comm, (first_device + s.rank - rank_base) % gpus);
    };
#endif
  } else {
    build = [&o, threads](const dist::ShardSpec& s, dist::Communicator& comm) {
      return std::unique_ptr<Backend>(CpuBackend::load(o.model, threads, CpuShard{s, &comm}));
    };
  }
  // Sizes that do not divide fail here, on every rank, before any connection is made.
  dist::make_shard(full, parallel, launch.rank_base);
  if (!launch.multi_process) return dist::make_thread_parallel_backend(full, parallel, build);
  log::info(launch.describe());
  return dist::run_process_ranks(full, parallel, dist::connect_local_ranks(launch), build);
}

}  // namespace

std::unique_ptr<Backend> create_backend(const BackendOptions& options) {
  const std::string& device = options.device;
  MIXSERVE_CHECK(device == "cpu" || device == "cuda" || device == "auto", "--device ", device,
                 " is not one of cpu, cuda, auto");
  MIXSERVE_CHECK(options.tensor_parallel >= 1, "--tensor-parallel ", options.tensor_parallel,
                 " must be at least 1");
  const bool synthetic = options.model.rfind("synthetic:", 0) == 0;
  const bool use_cuda = device == "cuda" || (device == "auto" && cuda_device_count() > 0);
  const dist::LaunchInfo launch = launch_info(options);
  const bool parallel = options.tensor_parallel > 1 || launch.multi_process;
  if (options.expert_parallel && !parallel) {
    log::warn("--expert-parallel has no effect with --tensor-parallel 1 (one rank holds every "
              "expert)");
  }
  if (use_cuda) {
    MIXSERVE_CHECK(cuda_build_enabled(),
                   "--device cuda: this build has no CUDA backend "
                   "(rebuild with nvcc installed) ; use --device cpu");
    MIXSERVE_CHECK(cuda_device_count() > 0,
                   "--device cuda: no CUDA device found; use "
                   "--device cpu");
#ifdef MIXSERVE_HAVE_CUDA
    if (!parallel) return make_cuda_backend(options);
#endif
  }
  if (!use_cuda) {
    MIXSERVE_CHECK(options.quantization == "none" && options.kv_cache_dtype == "auto",
                   "--quantization fp8 and --kv-cache-dtype fp8 need --device cuda (the CPU "
                   "backend computes in float32)");
    MIXSERVE_CHECK(!synthetic, "--model ", options.model,
                   ": synthetic models are made on the GPU "
                   "and need --device cuda (no CUDA device here); pass a checkpoint folder "
                   "(`mixserve make-model` writes small ones) for --device cpu");
  }
  if (parallel) return create_parallel_backend(options, use_cuda, launch);
  return CpuBackend::load(options.model, options.num_threads);
}

}  // namespace mixserve
