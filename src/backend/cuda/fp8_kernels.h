// Host launchers of the FP8 (E4M3) kernels: weight quantization at load time, and the dynamic
// per-token activation quantization fused into the kernels that produce a GEMM's input
// (RMSNorm, SiLU·mul, the MoE row gather). Plain C++, like kernels.h.
//
// Quantization of one row v[0..C): amax = max |v|, scale = amax / 448 (1 when amax is 0),
// q[i] = e4m3(v[i] * (448 / amax)) rounded to nearest even, saturating at ±448. A GEMM with
// operands (q_x, scale_x) and (q_w, scale_w) computes y ≈ scale_x[t] * scale_w[n] * sum q q.
//
// Scale layout of the MoE rows: the T*K sorted rows' scales are stored "padded", each
// expert's run starting at a multiple of 4 floats, so every expert's GEMM gets a 16-byte
// aligned scale vector: padded(r) = r + sum over e' < e(r) of (round_up4(c_e') - c_e'), with
// e(r) the expert whose rows [offsets[e], offsets[e+1]) hold r. offsets == nullptr: padded(r)
// = r. A padded scale array holds T*K + 3E floats.
//
// Shapes: R rows, C columns, T tokens, H hidden, F FFN size, E experts. `dt` is the half type
// (kBF16 / kF16) of the non-FP8 buffers; q buffers are uint8 E4M3, scales float32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "model/dtype.h"

namespace mixserve::cuda {

constexpr float kFp8Max = 448.0f;

// Per-row quantization.  src: [R, C] dt; q: [R, C]; scales: [R]
cudaError_t quantize_rows_fp8(const void* src, DType dt, int64_t R, int C, uint8_t* q,
                              float* scales, cudaStream_t stream);

// add_rms_norm (kernels.h, without row selection) whose output row is also quantized:
// x_r += delta_r (delta may be null), n = w * x_r * rsqrt(mean(x_r^2) + eps) in float32;
// out_half[r] = n rounded to dt (skipped when out_half is null), (q[r], scales[r]) = the
// row's quantization of the float32 n.
//   x, delta: [R, H] float; w: [H] dt; out_half: [R, H] dt or null; q: [R, H]; scales: [R]
// delta_row [R] / delta_col [H] (both or neither; delta_col 16-byte aligned for the vector
// kernel): delta holds an unscaled FP8 GEMM's float sums, delta[r, i] standing for
// delta[r, i] * delta_row[r] * delta_col[i].
cudaError_t add_rms_norm_fp8(float* x, const float* delta, int R, int H, const void* w, float eps,
                             void* out_half, uint8_t* q, float* scales, DType dt,
                             cudaStream_t stream, const float* delta_row = nullptr,
                             const float* delta_col = nullptr);

// SiLU(gate) * up in float32, quantized per row.  gate_up: [n, 2F] dt; q: [n, F];
// scales: padded by `offsets` [E + 1] (see above) or [n] when offsets is null.
// in_row [n] / in_col [2F] (both or neither; F % 8 == 0): gate_up holds an unscaled FP8 GEMM's
// sums, whose values are gate_up[r, j] * in_row[r] * in_col[j].
cudaError_t silu_mul_fp8(const void* gate_up, int n, int F, uint8_t* q, float* scales,
                         const int32_t* offsets, int E, DType dt, cudaStream_t stream,
                         const float* in_row = nullptr, const float* in_col = nullptr);

// y[r, n] *= row[r] * col[n]: the scales of an unscaled FP8 GEMM's float output.
//   y: [R, N] float (16-byte aligned, N % 4 == 0); row: [R]; col: [N] (16-byte aligned)
cudaError_t scale_rows_cols(float* y, int64_t R, int N, const float* row, const float* col,
                            cudaStream_t stream);

// MoE gather of quantized rows with their scales: dst_q[r] = src_q[index[r]],
// dst_scales[padded(r)] = src_scales[index[r]].  src_q: [*, H], H % 16 == 0; index: [n];
// dst_q: [n, H]; offsets: [E + 1]
cudaError_t gather_rows_fp8(const uint8_t* src_q, const float* src_scales, const int32_t* index,
                            int n, int H, const int32_t* offsets, int E, uint8_t* dst_q,
                            float* dst_scales, cudaStream_t stream);

// Writes per-row scale vectors of per-tensor quantized weights: scales[r] = value. [R]
cudaError_t fill_scales(float* scales, int64_t R, float value, cudaStream_t stream);

}  // namespace mixserve::cuda
