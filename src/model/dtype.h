// Element types that appear in checkpoints and on the device, and conversions to float.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace mixserve {

enum class DType { kF32, kF16, kBF16, kF8E4M3, kI32, kI64, kU8 };

// Bytes per element.
size_t dtype_size(DType t);
// Safetensors spelling: "F32", "F16", "BF16", "F8_E4M3", "I32", "I64", "U8".
std::string_view dtype_name(DType t);
// Parses the safetensors spelling; returns false for anything else.
bool parse_dtype(std::string_view name, DType* out);

inline float bf16_to_float(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
// Round to nearest even, as torch does; NaN stays NaN.
uint16_t float_to_bf16(float f);
float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
// OCP E4M3 (fn: no infinities, max 448).
float fp8e4m3_to_float(uint8_t v);
uint8_t float_to_fp8e4m3(float f);

}  // namespace mixserve
