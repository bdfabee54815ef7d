// E4M3 conversion and packing shared by the FP8 kernels (fp8_quant.cuh, moe_padded_fp8.cuh):
// round to nearest even, saturating at ±448 (satfinite), little-endian bytes in a word.
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

namespace mixserve::cuda {

__device__ __forceinline__ uint8_t to_e4m3(float v) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

// Eight values times `inv`, as eight E4M3 bytes (v[0] in the lowest byte).
__device__ __forceinline__ uint2 pack_e4m3x8(const float (&v)[8], float inv) {
  uint32_t w[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    w[h] = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) w[h] |= uint32_t{to_e4m3(v[4 * h + j] * inv)} << (8 * j);
  }
  return make_uint2(w[0], w[1]);
}

}  // namespace mixserve::cuda
