#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "model/dtype.h"

namespace mixserve {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(DType, SizesNamesAndParse) {
  EXPECT_EQ(dtype_size(DType::kF32), 4u);
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF8E4M3), 1u);
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3, DType::kI32,
                  DType::kI64, DType::kU8}) {
    DType parsed = DType::kU8;
    ASSERT_TRUE(parse_dtype(dtype_name(t), &parsed)) << dtype_name(t);
    EXPECT_EQ(parsed, t);
  }
  DType t;
  EXPECT_FALSE(parse_dtype("F8_E5M2", &t));
  EXPECT_FALSE(parse_dtype("bf16", &t));
  EXPECT_EQ(dtype_name(DType::kF8E4M3), "F8_E4M3");
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(float_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808001)), 0x3f81);  // above the tie
  EXPECT_EQ(float_to_bf16(from_bits(0x7f7fffff)), 0x7f80);  // FLT_MAX rounds to inf
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(float_to_bf16(from_bits(0x00010000)), 0x0001);  // subnormal kept
  const uint16_t nan = float_to_bf16(from_bits(0x7f800001));  // payload only in low bits
  EXPECT_TRUE(std::isnan(bf16_to_float(nan)));
  EXPECT_FLOAT_EQ(bf16_to_float(0x4049), 3.140625f);
}

TEST(DType, Fp16KnownPatterns) {
  EXPECT_EQ(float_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_fp16(-2.5f), 0xc100);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7bff);       // below the halfway point to 65536
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);       // halfway: ties to even = inf
  EXPECT_EQ(float_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: zero
  EXPECT_EQ(float_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_fp16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie to even 2
  EXPECT_EQ(float_to_fp16(std::ldexp(1023.5f, -24)), 0x0400);  // carries into the normals
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie, even
  EXPECT_EQ(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie, odd up
  EXPECT_EQ(float_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(std::nanf("")))));

  EXPECT_EQ(fp16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_float(0x83ff), -std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(fp16_to_float(0xfc00)) && fp16_to_float(0xfc00) < 0);
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7e00)));
  EXPECT_TRUE(std::signbit(fp16_to_float(0x8000)));
}

TEST(DType, Fp16RoundTripsEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) continue;  // NaN
    ASSERT_EQ(float_to_fp16(fp16_to_float(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(DType, Fp8E4M3KnownPatterns) {
  EXPECT_EQ(float_to_fp8e4m3(1.0f), 0x38);
  EXPECT_EQ(float_to_fp8e4m3(-1.0f), 0xb8);
  EXPECT_EQ(float_to_fp8e4m3(448.0f), 0x7e);
  EXPECT_EQ(float_to_fp8e4m3(1000.0f), 0x7e);  // saturates
  EXPECT_EQ(float_to_fp8e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(float_to_fp8e4m3(std::nanf("")), 0x7f);
  EXPECT_EQ(float_to_fp8e4m3(-std::nanf("")), 0xff);
  EXPECT_EQ(float_to_fp8e4m3(std::ldexp(1.0f, -6)), 0x08);   // smallest normal
  EXPECT_EQ(float_to_fp8e4m3(std::ldexp(1.0f, -9)), 0x01);   // smallest subnormal
  EXPECT_EQ(float_to_fp8e4m3(std::ldexp(1.0f, -10)), 0x00);  // tie to even zero
  EXPECT_EQ(float_to_fp8e4m3(std::ldexp(3.0f, -10)), 0x02);  // 1.5 units: tie to even 2
  EXPECT_EQ(float_to_fp8e4m3(std::ldexp(7.5f, -9)), 0x08);   // carries into the normals
  EXPECT_EQ(float_to_fp8e4m3(1.0625f), 0x38);  // tie between 1 and 1.125: even
  EXPECT_EQ(float_to_fp8e4m3(1.1875f), 0x3a);  // tie between 1.125 and 1.25: even
  EXPECT_EQ(float_to_fp8e4m3(1.07f), 0x39);
  EXPECT_EQ(float_to_fp8e4m3(1e-9f), 0x00);

  EXPECT_EQ(fp8e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_float(0xfe), -448.0f);
  EXPECT_EQ(fp8e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8e4m3_to_float(0x07), std::ldexp(7.0f, -9));
  EXPECT_EQ(fp8e4m3_to_float(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(fp8e4m3_to_float(0x78), 256.0f);  // exponent 15 is finite in the fn variant
  EXPECT_TRUE(std::isnan(fp8e4m3_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(fp8e4m3_to_float(0xff)));
}

TEST(DType, Fp8RoundTripsEveryValue) {
  for (uint32_t v = 0; v < 256; ++v) {
    if ((v & 0x7f) == 0x7f) continue;
    ASSERT_EQ(float_to_fp8e4m3(fp8e4m3_to_float(static_cast<uint8_t>(v))), v) << v;
  }
}

}  // namespace
}  // namespace mixserve
