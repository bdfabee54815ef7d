#include "backend/cuda/synthetic_weights.cuh"

namespace mixserve::cuda {

cudaError_t fill_synthetic(void* out, DType dt, int64_t n, uint64_t key, double half_width,
                           bool norm, cudaStream_t stream) {
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    return launch_fill_synthetic(static_cast<T*>(out), n, key, half_width, norm, stream);
  });
}

}  // namespace mixserve::cuda
