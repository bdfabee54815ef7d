// Dispatch point of the FP8 quantization kernels (fp8_quant.cuh).
#include "backend/cuda/fp8_quant.cuh"

#include <algorithm>

namespace mixserve::cuda {

cudaError_t quantize_rows_fp8(const void* src, DType dt, int64_t R, int C, uint8_t* q,
                              float* scales, cudaStream_t stream) {
  if (R <= 0) return cudaSuccess;
  if (R > 0x7fffffff) return cudaErrorInvalidValue;
  const int chunks_per_thread = (C / 8 + kQuantThreads - 1) / kQuantThreads;
  const bool vec = C % 8 == 0 && chunks_per_thread <= 4 &&
                   reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(q) % 8 == 0;
  const unsigned grid = static_cast<unsigned>(R);
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* s = static_cast<const T*>(src);
    if (!vec) {
      quantize_rows_fp8_kernel<T><<<grid, kQuantThreads, 0, stream>>>(s, C, q, scales);
    } else if (chunks_per_thread <= 1) {
      quantize_rows_fp8_vec_kernel<T, 1><<<grid, kQuantThreads, 0, stream>>>(s, C, q, scales);
    } else if (chunks_per_thread <= 2) {
      quantize_rows_fp8_vec_kernel<T, 2><<<grid, kQuantThreads, 0, stream>>>(s, C, q, scales);
    } else {
      quantize_rows_fp8_vec_kernel<T, 4><<<grid, kQuantThreads, 0, stream>>>(s, C, q, scales);
    }
    return cudaGetLastError();
  });
}

cudaError_t add_rms_norm_fp8(float* x, const float* delta, int R, int H, const void* w, float eps,
                             void* out_half, uint8_t* q, float* scales, DType dt,
                             cudaStream_t stream, const float* delta_row,
                             const float* delta_col) {
  if (R <= 0) return cudaSuccess;
  if ((delta_row == nullptr) != (delta_col == nullptr) || (delta_col != nullptr && !delta)) {
    return cudaErrorInvalidValue;
  }
  // Rows of float4 chunks that fit the registers take the one-pass kernel.
  const int chunks_per_thread = (H / 4 + kQuantThreads - 1) / kQuantThreads;
  const auto aligned = [](const void* p, uintptr_t a) {
    return reinterpret_cast<uintptr_t>(p) % a == 0;
  };
  const bool vec = H % 4 == 0 && chunks_per_thread <= 8 && aligned(x, 16) && aligned(delta, 16) &&
                   aligned(w, 8) && aligned(out_half, 8) && aligned(q, 4) &&
                   aligned(delta_col, 16);
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* wt = static_cast<const T*>(w);
    T* oh = static_cast<T*>(out_half);
    if (!vec) {
      add_rms_norm_fp8_kernel<T>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales, delta_row,
                                            delta_col);
    } else if (chunks_per_thread <= 1) {
      add_rms_norm_fp8_vec_kernel<T, 1>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales, delta_row,
                                            delta_col);
    } else if (chunks_per_thread <= 2) {
      add_rms_norm_fp8_vec_kernel<T, 2>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales, delta_row,
                                            delta_col);
    } else if (chunks_per_thread <= 4) {
      add_rms_norm_fp8_vec_kernel<T, 4>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales, delta_row,
                                            delta_col);
    } else {
      add_rms_norm_fp8_vec_kernel<T, 8>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales, delta_row,
                                            delta_col);
    }
    return cudaGetLastError();
  });
}

cudaError_t add_rms_norm_fp8_moe(float* x, const MoeCombineFp8& delta, int R, int H,
                                 const void* w, float eps, void* out_half, uint8_t* q,
                                 float* scales, DType dt, cudaStream_t stream) {
  if (R <= 0) return cudaSuccess;
  if (!add_rms_norm_fp8_moe_supported(H, delta.K)) return cudaErrorInvalidValue;
  const auto aligned = [](const void* p, uintptr_t a) {
    return reinterpret_cast<uintptr_t>(p) % a == 0;
  };
  if (!aligned(x, 16) || !aligned(delta.raw2, 16) || !aligned(delta.w2_scales, 16) ||
      !aligned(w, 8) || !aligned(out_half, 8) || !aligned(q, 4)) {
    return cudaErrorInvalidValue;
  }
  const int chunks_per_thread = (H / 4 + kQuantThreads - 1) / kQuantThreads;
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* wt = static_cast<const T*>(w);
    T* oh = static_cast<T*>(out_half);
    if (chunks_per_thread <= 1) {
      add_rms_norm_fp8_moe_kernel<T, 1>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales);
    } else if (chunks_per_thread <= 2) {
      add_rms_norm_fp8_moe_kernel<T, 2>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales);
    } else if (chunks_per_thread <= 4) {
      add_rms_norm_fp8_moe_kernel<T, 4>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales);
    } else {
      add_rms_norm_fp8_moe_kernel<T, 8>
          <<<R, kQuantThreads, 0, stream>>>(x, delta, H, wt, eps, oh, q, scales);
    }
    return cudaGetLastError();
  });
}

// silu_mul_fp8_vec_kernel with per_thread (1, 2, 4 or 8) chunks a thread.
template <typename T, bool kUnscaled>
cudaError_t launch_silu_mul_fp8_vec(int per_thread, int n, int threads, const T* src, int F,
                                    uint8_t* q, float* scales, const int32_t* offsets, int E,
                                    const float* in_row, const float* in_col,
                                    cudaStream_t stream) {
  if (per_thread == 1) {
    silu_mul_fp8_vec_kernel<T, 1, 2, kUnscaled>
        <<<n, threads, 0, stream>>>(src, F, q, scales, offsets, E, in_row, in_col);
  } else if (per_thread == 2) {
    silu_mul_fp8_vec_kernel<T, 2, 2, kUnscaled>
        <<<n, threads, 0, stream>>>(src, F, q, scales, offsets, E, in_row, in_col);
  } else if (per_thread == 4) {
    silu_mul_fp8_vec_kernel<T, 4, kSiluFp8MinBlocks4, kUnscaled>
        <<<n, threads, 0, stream>>>(src, F, q, scales, offsets, E, in_row, in_col);
  } else {
    silu_mul_fp8_vec_kernel<T, 8, 1, kUnscaled>
        <<<n, threads, 0, stream>>>(src, F, q, scales, offsets, E, in_row, in_col);
  }
  return cudaGetLastError();
}

cudaError_t silu_mul_fp8(const void* gate_up, int n, int F, uint8_t* q, float* scales,
                         const int32_t* offsets, int E, DType dt, cudaStream_t stream,
                         const float* in_row, const float* in_col) {
  if (n <= 0) return cudaSuccess;
  if ((in_row == nullptr) != (in_col == nullptr)) return cudaErrorInvalidValue;
  // Rows of 8-element chunks that fit the registers take the one-pass kernel: kChunks the
  // fewest of 1, 2, 4, 8 that fit the row in kSiluFp8MaxThreads threads (F = 14336: 4 chunks,
  // 448 threads).
  const int chunks = F / 8;
  const auto aligned = [](const void* p, uintptr_t a) {
    return reinterpret_cast<uintptr_t>(p) % a == 0;
  };
  const bool vec = F % 8 == 0 && chunks <= 8 * kSiluFp8MaxThreads && aligned(gate_up, 16) &&
                   aligned(q, 8) && aligned(in_col, 16);
  int per_thread = 1;
  while (per_thread < 8 && chunks > per_thread * kSiluFp8MaxThreads) per_thread *= 2;
  const int threads = std::max(32, ((chunks + per_thread - 1) / per_thread + 31) / 32 * 32);
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    const T* src = static_cast<const T*>(gate_up);
    if (!vec) {
      if (in_row != nullptr) return cudaErrorInvalidValue;  // unscaled input: vector path only
      silu_mul_fp8_kernel<T><<<n, kQuantThreads, 0, stream>>>(src, F, q, scales, offsets, E);
      return cudaGetLastError();
    }
    if (in_row != nullptr) {
      return launch_silu_mul_fp8_vec<T, true>(per_thread, n, threads, src, F, q, scales, offsets,
                                              E, in_row, in_col, stream);
    }
    return launch_silu_mul_fp8_vec<T, false>(per_thread, n, threads, src, F, q, scales, offsets, E,
                                             in_row, in_col, stream);
  });
}

cudaError_t gather_rows_fp8(const uint8_t* src_q, const float* src_scales, const int32_t* index,
                            int n, int H, const int32_t* offsets, int E, uint8_t* dst_q,
                            float* dst_scales, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (H % 16 != 0) return cudaErrorInvalidValue;
  gather_rows_fp8_kernel<<<n, 128, 0, stream>>>(src_q, src_scales, index, H, offsets, E, dst_q,
                                                dst_scales);
  return cudaGetLastError();
}

cudaError_t scale_rows_cols(float* y, int64_t R, int N, const float* row, const float* col,
                            cudaStream_t stream) {
  if (R <= 0) return cudaSuccess;
  if (N % 4 != 0 || reinterpret_cast<uintptr_t>(y) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(col) % 16 != 0 || R > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  scale_rows_cols_kernel<<<static_cast<unsigned>(R), kScaleThreads, 0, stream>>>(y, N, row, col);
  return cudaGetLastError();
}

cudaError_t fill_scales(float* scales, int64_t R, float value, cudaStream_t stream) {
  if (R <= 0) return cudaSuccess;
  fill_scales_kernel<<<static_cast<unsigned>((R + 255) / 256), 256, 0, stream>>>(scales, R, value);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
