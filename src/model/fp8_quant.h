// FP8 E4M3 per-row quantization on the host: the reference of the CUDA kernels
// (backend/cuda/fp8_kernels.h uses the same formula) and the writer of `mixserve quantize`.
//
// One row v[0..C): amax = max |v|, scale = amax / 448 (1 when amax is 0),
// q[i] = e4m3(v[i] * (448 / amax)), round to nearest even, saturating at ±448.
#pragma once

#include <cstdint>
#include <vector>

namespace mixserve {

class Checkpoint;
struct TensorView;

// src: [R, C] float; q: [R, C] E4M3 bytes; scales: [R]
void quantize_rows_fp8(const float* src, int64_t R, int64_t C, uint8_t* q, float* scales);

// out[r, c] = e4m3_to_float(q[r, c]) * scales[per_channel ? r : 0].  out: [R, C]
void dequantize_rows_fp8(const uint8_t* q, const float* scales, bool per_channel, int64_t R,
                         int64_t C, float* out);

// The per-row scales of an F8_E4M3 checkpoint weight w [rows, cols]: its "<name>_scale"
// tensor (model/loader.h) per row, or its one value repeated. Throws naming the tensor when
// it is missing, has a wrong shape or dtype, or holds a value that is not finite and > 0.
std::vector<float> fp8_row_scales(const Checkpoint& ckpt, const TensorView& w);

// w as float32 [numel]; an F8_E4M3 tensor is dequantized with fp8_row_scales.
std::vector<float> tensor_to_float(const Checkpoint& ckpt, const TensorView& w);

}  // namespace mixserve
