#include "backend/cuda/attention.cuh"

namespace mixserve::cuda {

cudaError_t paged_attention(const AttentionArgs& args, DType dt, cudaStream_t stream) {
  return dispatch_half_type(
      dt, [&](auto tag) { return launch_paged_attention<decltype(tag)>(args, stream); });
}

}  // namespace mixserve::cuda
