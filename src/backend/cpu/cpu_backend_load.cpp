// CpuBackend::load: a model folder (config.json + safetensors) into a CPU backend.
#include <memory>
#include <utility>

#include "backend/cpu/cpu_backend.h"
#include "model/loader.h"
#include "util/error.h"

namespace mixserve {

std::unique_ptr<CpuBackend> CpuBackend::load(const std::filesystem::path& model_dir,
                                             int num_threads, std::optional<CpuShard> shard) {
  ModelFiles files = open_model_dir(model_dir);
  CpuWeights weights = shard ? load_cpu_shard_weights(files.config, *files.checkpoint, shard->spec)
                             : load_cpu_weights(files.config, *files.checkpoint);
  return std::make_unique<CpuBackend>(files.config, std::move(weights), num_threads,
                                      std::move(shard));
}

}  // namespace mixserve
