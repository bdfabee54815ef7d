#include "backend/cuda/tp_reduce.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

namespace mixserve::cuda {
namespace {

constexpr int kThreads = 256;

// 8 elements a thread: 32 bytes of floats in, 16 bytes of bf16 out (n % 8 == 0 fast path).
__global__ void round_to_bf16_kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ out,
                                     size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x * 8;
  for (size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8; i < n; i += stride) {
    if (i + 8 <= n) {
      const float4 a = *reinterpret_cast<const float4*>(x + i);
      const float4 b = *reinterpret_cast<const float4*>(x + i + 4);
      __nv_bfloat162 r[4] = {__floats2bfloat162_rn(a.x, a.y), __floats2bfloat162_rn(a.z, a.w),
                             __floats2bfloat162_rn(b.x, b.y), __floats2bfloat162_rn(b.z, b.w)};
      *reinterpret_cast<uint4*>(out + i) = *reinterpret_cast<const uint4*>(r);
    } else {
      for (size_t j = i; j < n; ++j) out[j] = __float2bfloat16_rn(x[j]);
    }
  }
}

__global__ void widen_bf16_kernel(const __nv_bfloat16* __restrict__ in, float* __restrict__ out,
                                  size_t n) {
  const size_t stride = size_t(gridDim.x) * blockDim.x * 8;
  for (size_t i = (size_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8; i < n; i += stride) {
    if (i + 8 <= n) {
      const uint4 v = *reinterpret_cast<const uint4*>(in + i);
      const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
      float2 f[4];
      for (int k = 0; k < 4; ++k) f[k] = __bfloat1622float2(h[k]);
      *reinterpret_cast<float4*>(out + i) = make_float4(f[0].x, f[0].y, f[1].x, f[1].y);
      *reinterpret_cast<float4*>(out + i + 4) = make_float4(f[2].x, f[2].y, f[3].x, f[3].y);
    } else {
      for (size_t j = i; j < n; ++j) out[j] = __bfloat162float(in[j]);
    }
  }
}

int blocks_for(size_t n) {
  return static_cast<int>(std::clamp<size_t>((n / 8 + kThreads - 1) / kThreads, 1, 132 * 8));
}

}  // namespace

// The vector path needs 16-byte aligned buffers (the workspace's parts are aligned); a count
// that is not a multiple of 8 ends in the scalar loop.
cudaError_t round_to_bf16(const float* x, void* out, size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  round_to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      x, static_cast<__nv_bfloat16*>(out), n);
  return cudaGetLastError();
}

cudaError_t widen_bf16(const void* in, float* out, size_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  widen_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(in), out, n);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
