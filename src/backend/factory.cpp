#include "backend/factory.h"

#include <omp.h>

#include <algorithm>
#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "backend/device.h"
#include "model/presets.h"
#include "dist/launch_env.h"
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

namespace {

std::unique_ptr<Backend> create_parallel_backend(const BackendOptions& o, bool use_cuda,
                                                 const std::optional<dist::Rendezvous>& launch) {
  const dist::ParallelConfig parallel{o.tensor_parallel, o.expert_parallel};
  const std::string prefix = "synthetic:";
  const bool synthetic = o.model.rfind(prefix, 0) == 0;
  const ModelConfig full =
      synthetic ? preset_from_spec(o.model.substr(prefix.size()))
                : ModelConfig::from_file(std::filesystem::path(o.model) / "config.json");
  // Ranks that share this process share its cores.
  const int ranks_here = launch ? 1 : o.tensor_parallel;
  const int threads = o.num_threads > 0 ? o.num_threads
                                        : std::max(1, omp_get_max_threads() / ranks_here);
  dist::ShardBuilder build;
  if (use_cuda) {
#ifdef MIXSERVE_HAVE_CUDA
    // One GPU per rank: threads of one process take devices 0..N-1; a process of a
    // multi-process launch takes its rank modulo the GPUs it sees (MIXSERVE_TP_SAME_DEVICE=1:
    // every rank on device 0, for tests on one GPU).
    const int gpus = std::max(1, cuda_device_count());
    build = [&o, gpus](const dist::ShardSpec& s, dist::Communicator& comm) {
      return make_cuda_shard_backend(o, s, &comm, s.rank % gpus);
    };
#endif
  } else {
    build = [&o, threads](const dist::ShardSpec& s, dist::Communicator& comm) {
      return std::unique_ptr<Backend>(CpuBackend::load(o.model, threads, CpuShard{s, &comm}));
    };
  }
  if (!launch) return dist::make_thread_parallel_backend(full, parallel, build);
  log::info("rank ", launch->rank, " of ", launch->world_size, ": connecting to ",
            launch->master_addr, ":", launch->master_port);
  // Sizes that do not divide fail here, on every rank, before any connection is made.
  dist::make_shard(full, parallel, launch->rank);
  return dist::run_process_rank(full, parallel, dist::connect_tcp(*launch), build);
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
  const std::optional<dist::Rendezvous> launch = dist::launch_from_options(
      options.nnodes, options.node_rank, options.master_addr, options.master_port);
  const bool parallel = options.tensor_parallel > 1 || launch.has_value();
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
