#include "backend/cuda/rms_norm.cuh"

namespace mixserve::cuda {

cudaError_t add_rms_norm(float* x, const float* delta, const int32_t* rows, int R, int H,
                         const void* w, float eps, void* out, DType dt, cudaStream_t stream) {
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    return launch_add_rms_norm(x, delta, rows, R, H, static_cast<const T*>(w), eps,
                               static_cast<T*>(out), stream);
  });
}

}  // namespace mixserve::cuda
