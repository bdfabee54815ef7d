// Host FP8 references shared by the CUDA FP8 tests: per-row E4M3 quantization (model/fp8_quant.h)
// and its round trip.
#pragma once

#include <cstdint>
#include <vector>

#include "model/fp8_quant.h"

namespace mixserve::cuda_test {

struct Quantized {
  std::vector<uint8_t> q;
  std::vector<float> scales;
};

// Rows [R, C] quantized to E4M3 with one scale a row.
inline Quantized quantize(const std::vector<float>& v, int64_t R, int64_t C) {
  Quantized r{std::vector<uint8_t>(v.size()), std::vector<float>(R)};
  quantize_rows_fp8(v.data(), R, C, r.q.data(), r.scales.data());
  return r;
}

// Host quantize + dequantize of rows [R, C]: what an exact FP8 kernel decodes to.
inline std::vector<float> quant_dequant(const std::vector<float>& v, int64_t R, int64_t C) {
  const Quantized q = quantize(v, R, C);
  std::vector<float> out(v.size());
  dequantize_rows_fp8(q.q.data(), q.scales.data(), true, R, C, out.data());
  return out;
}

}  // namespace mixserve::cuda_test
