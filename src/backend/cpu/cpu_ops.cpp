#include "backend/cpu/cpu_ops.h"

#include <cmath>
#include <cstdint>

namespace mixserve::cpu {

float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i + j < n; ++j) acc[j] += a[i + j] * b[i + j];
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

void linear(const float* x, int T, const float* w, int in, int out, float* y, int num_threads) {
  // Each weight row is used for every token while it is in cache; one thread owns each output.
#pragma omp parallel for schedule(static) num_threads(num_threads) if (num_threads > 1 && \
                                                                          int64_t{T} * out * in > 32768)
  for (int o = 0; o < out; ++o) {
    const float* wr = w + static_cast<size_t>(o) * in;
    for (int t = 0; t < T; ++t) {
      y[static_cast<size_t>(t) * out + o] = dot(x + static_cast<size_t>(t) * in, wr, in);
    }
  }
}

void rms_norm(const float* x, int T, int H, const float* w, float eps, float* y) {
  for (int t = 0; t < T; ++t) {
    const float* xr = x + static_cast<size_t>(t) * H;
    float* yr = y + static_cast<size_t>(t) * H;
    const float mean_sq = dot(xr, xr, H) / static_cast<float>(H);
    const float inv_rms = 1.0f / std::sqrt(mean_sq + eps);
    for (int i = 0; i < H; ++i) yr[i] = w[i] * (xr[i] * inv_rms);
  }
}

std::vector<float> rope_inv_freq(int D, double theta) {
  std::vector<float> inv(D / 2);
  const float base = static_cast<float>(theta);
  for (int i = 0; i < D / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(D);
    inv[i] = 1.0f / std::pow(base, exponent);
  }
  return inv;
}

void apply_rope(float* x, int heads, int D, int position, const float* inv_freq) {
  const int half = D / 2;
  const float pos = static_cast<float>(position);
  for (int i = 0; i < half; ++i) {
    const float angle = pos * inv_freq[i];
    const float c = std::cos(angle), s = std::sin(angle);
    for (int h = 0; h < heads; ++h) {
      float* v = x + static_cast<size_t>(h) * D;
      const float lo = v[i], hi = v[i + half];
      v[i] = lo * c - hi * s;
      v[i + half] = hi * c + lo * s;
    }
  }
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace mixserve::cpu
