#include "backend/cuda/rope_kv.cuh"

namespace mixserve::cuda {

cudaError_t rope_write_kv(void* qkv, DType dt, int T, int Hq, int Hkv, int D,
                          const int32_t* positions, const int64_t* slots, const float* inv_freq,
                          void* k_cache, void* v_cache, cudaStream_t stream,
                          const KvFp8Scales* kv_fp8, const float* row_scale,
                          const float* col_scale) {
  return dispatch_half_type(dt, [&](auto tag) {
    using E = decltype(tag);
    if (kv_fp8 != nullptr) {
      using C = __nv_fp8_e4m3;
      return launch_rope_write_kv(static_cast<E*>(qkv), T, Hq, Hkv, D, positions, slots, inv_freq,
                                  static_cast<C*>(k_cache), static_cast<C*>(v_cache),
                                  1.0f / kv_fp8->k_scale, 1.0f / kv_fp8->v_scale, stream,
                                  row_scale, col_scale);
    }
    return launch_rope_write_kv(static_cast<E*>(qkv), T, Hq, Hkv, D, positions, slots, inv_freq,
                                static_cast<E*>(k_cache), static_cast<E*>(v_cache), 1.0f, 1.0f,
                                stream, row_scale, col_scale);
  });
}

}  // namespace mixserve::cuda
