// --device cuda for the backend factory (backend/factory.cpp): options and model name in,
// a CudaBackend out.
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_shard_factory.h"
#include "backend/factory.h"
#include "model/make_model.h"
#include "model/presets.h"
#include "util/error.h"

namespace mixserve {

cuda::CudaBackendOptions cuda_backend_options(const BackendOptions& o) {
  cuda::CudaBackendOptions co;
  MIXSERVE_CHECK(o.dtype == "bf16" || o.dtype == "fp16" || o.dtype == "bfloat16" ||
                     o.dtype == "float16" || o.dtype == "f16",
                 "--dtype ", o.dtype, " is not supported by the CUDA backend (bf16 or fp16)");
  co.dtype = parse_weight_dtype(o.dtype);
  co.gpu_memory_fraction = o.gpu_memory_fraction;
  co.max_num_tokens = o.max_num_tokens;
  co.max_num_seqs = o.max_num_seqs;
  co.fp8 = o.quantization == "fp8";
  co.kv_fp8 = o.kv_cache_dtype == "fp8";
  co.enforce_eager = o.enforce_eager;
  co.device_sampling = !o.host_sampling;
  if (o.moe_padded_max_rows >= 0) co.moe_padded_max_rows = o.moe_padded_max_rows;
  return co;
}

std::unique_ptr<cuda::CudaBackend> make_cuda_backend_with(const BackendOptions& o,
                                                          const cuda::CudaBackendOptions& co) {
  const std::string prefix = "synthetic:";
  if (o.model.rfind(prefix, 0) == 0) {
    return cuda::CudaBackend::synthetic(preset_from_spec(o.model.substr(prefix.size())),
                                        /*seed=*/0, co);
  }
  return cuda::CudaBackend::load(o.model, co);
}

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& o) {
  return make_cuda_backend_with(o, cuda_backend_options(o));
}

}  // namespace mixserve
