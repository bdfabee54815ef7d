#include "backend/cuda/moe_ffn.cuh"

namespace mixserve::cuda {

cudaError_t gather_rows(const void* src, const int32_t* index, int n, int H, void* dst, DType dt,
                        cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    gather_rows_kernel<T>
        <<<n, 256, 0, stream>>>(static_cast<const T*>(src), index, H, static_cast<T*>(dst));
    return cudaGetLastError();
  });
}

cudaError_t silu_mul(const void* gate_up, int n, int F, void* out, DType dt, cudaStream_t stream) {
  if (n <= 0 || F <= 0) return cudaSuccess;
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    const bool vec = F % 8 == 0 && reinterpret_cast<uintptr_t>(gate_up) % 16 == 0 &&
                     reinterpret_cast<uintptr_t>(out) % 16 == 0;
    if (vec) {
      // x: the row's chunk groups; y: rows (a block loops over rows y, y + gridDim.y, ...).
      const unsigned gx = static_cast<unsigned>((F / 8 + 2 * kSiluVecThreads - 1) /
                                                (2 * kSiluVecThreads));
      const dim3 grid(gx, static_cast<unsigned>(n < 65535 ? n : 65535));
      silu_mul_vec_kernel<T><<<grid, kSiluVecThreads, 0, stream>>>(
          static_cast<const T*>(gate_up), n, F, static_cast<T*>(out));
    } else {
      const int64_t blocks = (int64_t{n} * F + 255) / 256;
      const unsigned grid = static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
      silu_mul_kernel<T><<<grid, 256, 0, stream>>>(static_cast<const T*>(gate_up), n, F,
                                                    static_cast<T*>(out));
    }
    return cudaGetLastError();
  });
}

cudaError_t moe_combine(const float* y, const int32_t* experts, const float* weights,
                        const int32_t* pair_pos, int T, int K, int H, float* out,
                        cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  if (K <= 0 || K > kMoeMaxTopK) return cudaErrorInvalidValue;
  const bool vec = H % 4 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vec && K == 2) {
    moe_combine_vec_kernel<2><<<T, kCombineThreads, 0, stream>>>(y, experts, weights, pair_pos, H,
                                                                  out);
  } else if (vec && K == 1) {
    moe_combine_vec_kernel<1><<<T, kCombineThreads, 0, stream>>>(y, experts, weights, pair_pos, H,
                                                                  out);
  } else if (vec && K == 4) {
    moe_combine_vec_kernel<4><<<T, kCombineThreads, 0, stream>>>(y, experts, weights, pair_pos, H,
                                                                  out);
  } else {
    moe_combine_kernel<<<T, 256, 0, stream>>>(y, experts, weights, pair_pos, K, H, out);
  }
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
