#include "backend/cuda/attention.cuh"

namespace mixserve::cuda {

cudaError_t paged_attention(const AttentionArgs& args, DType dt, cudaStream_t stream) {
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    if (args.kv_fp8) return launch_paged_attention<T, __nv_fp8_e4m3>(args, stream);
    return launch_paged_attention<T, T>(args, stream);
  });
}

}  // namespace mixserve::cuda
