#include "backend/factory.h"

#include "backend/cpu/cpu_backend.h"
#include "util/error.h"

namespace mixserve {

std::unique_ptr<Backend> create_backend(const BackendOptions& options) {
  const std::string& device = options.device;
  MIXSERVE_CHECK(device == "cpu" || device == "cuda" || device == "auto", "--device ", device,
                 " is not one of cpu, cuda, auto");
  MIXSERVE_CHECK(options.model.rfind("synthetic:", 0) != 0, "--model ", options.model,
                 ": synthetic models are not available in this build yet; pass a checkpoint "
                 "folder");
  // "auto" means the CPU until a CUDA backend exists, even where a GPU is present.
  MIXSERVE_CHECK(device != "cuda", "--device cuda: this build has no CUDA backend yet; use "
                                   "--device cpu");
  return CpuBackend::load(options.model, options.num_threads);
}

}  // namespace mixserve
