// Element types and the bit-exact conversions between float32 and the narrow formats.
//
// All conversions work on bit patterns (memcpy, never pointer casts) so they behave the same on
// every compiler and under UBSan. Rounding is round-to-nearest-even everywhere, which is what
// torch does for bf16/fp16 casts and for float8_e4m3fn.
#include "model/dtype.h"

#include <cstdint>

namespace mixserve {
namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Shifts `m` right by `shift` (1..31) rounding to nearest, ties to even.
uint32_t shift_round_even(uint32_t m, int shift) {
  const uint32_t q = m >> shift;
  const uint32_t rem = m & ((uint32_t{1} << shift) - 1);
  const uint32_t half = uint32_t{1} << (shift - 1);
  return (rem > half || (rem == half && (q & 1))) ? q + 1 : q;
}

}  // namespace

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kF8E4M3: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
  }
  return "?";
}

bool parse_dtype(std::string_view name, DType* out) {
  static constexpr DType kAll[] = {DType::kF32, DType::kF16,  DType::kBF16, DType::kF8E4M3,
                                   DType::kI32, DType::kI64, DType::kU8};
  for (DType t : kAll) {
    if (dtype_name(t) == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN, sign and payload top kept
  }
  // Adding 0x7fff plus the lowest kept bit rounds ties to even; an overflow into the exponent
  // is the correct result (rounds up to the next binade or to infinity).
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp != 0) return bits_float(sign | ((exp + 112) << 23) | (man << 13));
  // Zero or subnormal: man × 2^-24 is exact in float32.
  const float v = static_cast<float>(man) * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

uint16_t float_to_fp16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((a >> 13) & 0x3ffu);  // NaN
  // 65520 (0x477ff000) and above round to infinity; so does infinity itself.
  if (a >= 0x477ff000u) return sign | 0x7c00u;
  if (a >= 0x38800000u) {  // normal half: |f| >= 2^-14
    const uint32_t rounded = a + 0x0fffu + ((a >> 13) & 1u);
    return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
  }
  // Subnormal half: units of 2^-24. |f| = m × 2^(e-150), so shift m right by 126 - e.
  const int e = static_cast<int>(a >> 23);
  if (e < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself ties to even zero)
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  return sign | static_cast<uint16_t>(shift_round_even(m, 126 - e));  // may carry to 0x0400
}

float fp8e4m3_to_float(uint8_t v) {
  const bool neg = (v & 0x80u) != 0;
  const uint32_t exp = (v >> 3) & 0xfu;
  const uint32_t man = v & 0x7u;
  float r;
  if ((v & 0x7fu) == 0x7fu) {
    r = bits_float(0x7fc00000u);
  } else if (exp == 0) {
    r = static_cast<float>(man) * 0.001953125f;  // man × 2^-9
  } else {
    r = bits_float(((exp + 120) << 23) | (man << 20));
  }
  return neg ? -r : r;
}

uint8_t float_to_fp8e4m3(float f) {
  const uint32_t u = float_bits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7fu;  // NaN
  // Saturating encode: anything at or beyond the largest finite value (448), infinity included,
  // becomes ±448. (torch's plain cast would give NaN past 464; checkpoints want saturation.)
  if (a >= 0x43e00000u) return sign | 0x7eu;
  if (a >= 0x3c800000u) {  // normal: |f| >= 2^-6
    const uint32_t rounded = a + 0x7ffffu + ((a >> 20) & 1u);
    const uint32_t r = (rounded >> 20) - (120u << 3);
    return sign | static_cast<uint8_t>(r > 0x7eu ? 0x7eu : r);
  }
  // Subnormal: units of 2^-9; |f| = m × 2^(e-150), shift right by 141 - e.
  const int e = static_cast<int>(a >> 23);
  if (e < 117) return sign;  // below 2^-10 rounds to zero (2^-10 itself ties to even zero)
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  return sign | static_cast<uint8_t>(shift_round_even(m, 141 - e));  // may carry to 0x08
}

}  // namespace mixserve
