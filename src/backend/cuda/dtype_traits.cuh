// Element types the kernels are templated on (one dispatch point per launcher, no copies per
// dtype): BF16 and FP16 activations/weights, float32 for everything that accumulates.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "model/dtype.h"

namespace mixserve::cuda {

__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(float v) { return v; }
// E4M3 (the FP8 KV cache): the raw value; its per-tensor scale is applied by the caller.
__device__ __forceinline__ float to_float(__nv_fp8_e4m3 v) { return static_cast<float>(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_fp8_e4m3 from_float<__nv_fp8_e4m3>(float v) {
  return __nv_fp8_e4m3(v);  // round to nearest even, saturating (satfinite)
}

// kVec (1 or 4) consecutive bf16 values as floats, through the read-only cache (one 8-byte
// load for 4: p 8-byte aligned).
template <int kVec>
__device__ __forceinline__ void load_bf16(const __nv_bfloat16* p, float* out) {
  static_assert(kVec == 1 || kVec == 4, "load_bf16: 1 or 4 values");
  if constexpr (kVec == 1) {
    out[0] = __bfloat162float(__ldg(p));
  } else {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
    out[0] = a.x;
    out[1] = a.y;
    out[2] = b.x;
    out[3] = b.y;
  }
}

// Calls f(T{}) with T the device type of `t` (BF16 or F16); other dtypes are an invalid value.
template <typename F>
cudaError_t dispatch_half_type(DType t, F&& f) {
  switch (t) {
    case DType::kBF16:
      return f(__nv_bfloat16{});
    case DType::kF16:
      return f(__half{});
    default:
      return cudaErrorInvalidValue;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace mixserve::cuda
