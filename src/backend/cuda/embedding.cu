#include "backend/cuda/embedding.cuh"

namespace mixserve::cuda {

cudaError_t embedding_gather(const int32_t* ids, int T, const void* embed, DType dt, int H,
                             float* x, cudaStream_t stream) {
  return dispatch_half_type(dt, [&](auto tag) {
    using E = decltype(tag);
    return launch_embedding_gather(ids, T, static_cast<const E*>(embed), H, x, stream);
  });
}

}  // namespace mixserve::cuda
