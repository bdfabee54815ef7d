#include "backend/factory.h"

#include "backend/cpu/cpu_backend.h"
#include "backend/device.h"
#include "util/error.h"

namespace mixserve {

#ifdef MIXSERVE_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options);  // backend/cuda/
#endif

std::unique_ptr<Backend> create_backend(const BackendOptions& options) {
  const std::string& device = options.device;
  MIXSERVE_CHECK(device == "cpu" || device == "cuda" || device == "auto", "--device ", device,
                 " is not one of cpu, cuda, auto");
  const bool synthetic = options.model.rfind("synthetic:", 0) == 0;
  const bool use_cuda = device == "cuda" || (device == "auto" && cuda_device_count() > 0);
  if (use_cuda) {
    MIXSERVE_CHECK(cuda_build_enabled(),
                   "--device cuda: this build has no CUDA backend "
                   "(rebuild with nvcc installed) ; use --device cpu");
    MIXSERVE_CHECK(cuda_device_count() > 0,
                   "--device cuda: no CUDA device found; use "
                   "--device cpu");
#ifdef MIXSERVE_HAVE_CUDA
    return make_cuda_backend(options);
#endif
  }
  MIXSERVE_CHECK(options.quantization == "none" && options.kv_cache_dtype == "auto",
                 "--quantization fp8 and --kv-cache-dtype fp8 need --device cuda (the CPU "
                 "backend computes in float32)");
  MIXSERVE_CHECK(!synthetic, "--model ", options.model,
                 ": synthetic models are made on the GPU "
                 "and need --device cuda (no CUDA device here); pass a checkpoint folder "
                 "(`mixserve make-model` writes small ones) for --device cpu");
  return CpuBackend::load(options.model, options.num_threads);
}

}  // namespace mixserve
