// The CPU reference's building blocks against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_ops.h"

namespace mixserve::cpu {
namespace {

TEST(CpuOps, DotHandlesTailsAndIsExactOnIntegers) {
  for (int n : {1, 7, 8, 9, 23}) {
    std::vector<float> a(n), b(n);
    double expect = 0;
    for (int i = 0; i < n; ++i) {
      a[i] = float(i + 1);
      b[i] = float(2 - i);
      expect += double(a[i]) * b[i];
    }
    EXPECT_EQ(dot(a.data(), b.data(), n), float(expect)) << n;
  }
}

TEST(CpuOps, LinearIsNnLinearLayout) {
  // x: [2, 3], w: [2, 3] ([out, in]) -> y[t, o] = x[t] . w[o]
  const float x[] = {1, 2, 3, -1, 0, 1};
  const float w[] = {1, 0, 0, 1, 1, 1};
  float y[4];
  linear(x, 2, w, 3, 2, y, 2);
  EXPECT_EQ(y[0], 1);
  EXPECT_EQ(y[1], 6);
  EXPECT_EQ(y[2], -1);
  EXPECT_EQ(y[3], 0);
}

TEST(CpuOps, RmsNormMatchesTheFormula) {
  const float x[] = {3, 4, 0, 0};  // mean square 25/4
  const float w[] = {1, 2, 1, 1};
  float y[4];
  rms_norm(x, 1, 4, w, 0.0f, y);
  EXPECT_FLOAT_EQ(y[0], 3 / 2.5f);
  EXPECT_FLOAT_EQ(y[1], 2 * 4 / 2.5f);
  EXPECT_EQ(y[2], 0.0f);
}

TEST(CpuOps, RopeFrequenciesAndRotateHalf) {
  const std::vector<float> inv = rope_inv_freq(4, 10000.0);
  ASSERT_EQ(inv.size(), 2u);
  EXPECT_EQ(inv[0], 1.0f);
  EXPECT_FLOAT_EQ(inv[1], 0.01f);  // 1 / 10000^(2/4)
  // One head, D = 4: pairs are (x0, x2) and (x1, x3), rotated by pos * inv_freq.
  float v[] = {1, 2, 3, 4};
  apply_rope(v, 1, 4, 3, inv.data());
  const float c0 = std::cos(3.0f), s0 = std::sin(3.0f);
  const float c1 = std::cos(0.03f), s1 = std::sin(0.03f);
  EXPECT_FLOAT_EQ(v[0], 1 * c0 - 3 * s0);
  EXPECT_FLOAT_EQ(v[2], 3 * c0 + 1 * s0);
  EXPECT_FLOAT_EQ(v[1], 2 * c1 - 4 * s1);
  EXPECT_FLOAT_EQ(v[3], 4 * c1 + 2 * s1);
  float w[] = {1, 2, 3, 4};
  apply_rope(w, 1, 4, 0, inv.data());  // position 0 is the identity
  EXPECT_EQ(w[1], 2.0f);
  EXPECT_EQ(w[3], 4.0f);
}

TEST(CpuOps, Silu) {
  EXPECT_EQ(silu(0.0f), 0.0f);
  EXPECT_FLOAT_EQ(silu(2.0f), 2.0f / (1.0f + std::exp(-2.0f)));
  EXPECT_NEAR(silu(-30.0f), 0.0f, 1e-11);
}

}  // namespace
}  // namespace mixserve::cpu
