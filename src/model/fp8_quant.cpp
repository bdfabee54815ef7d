#include "model/fp8_quant.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "model/dtype.h"
#include "model/loader.h"
#include "model/safetensors.h"
#include "util/error.h"

namespace mixserve {

void quantize_rows_fp8(const float* src, int64_t R, int64_t C, uint8_t* q, float* scales) {
  constexpr float kMax = 448.0f;
  for (int64_t r = 0; r < R; ++r) {
    const float* s = src + r * C;
    float amax = 0.0f;
    for (int64_t c = 0; c < C; ++c) amax = std::max(amax, std::fabs(s[c]));
    const float inv = amax > 0.0f ? kMax / amax : 0.0f;
    scales[r] = amax > 0.0f ? amax / kMax : 1.0f;
    for (int64_t c = 0; c < C; ++c) q[r * C + c] = float_to_fp8e4m3(s[c] * inv);
  }
}

void dequantize_rows_fp8(const uint8_t* q, const float* scales, bool per_channel, int64_t R,
                         int64_t C, float* out) {
  for (int64_t r = 0; r < R; ++r) {
    const float s = scales[per_channel ? r : 0];
    for (int64_t c = 0; c < C; ++c) out[r * C + c] = fp8e4m3_to_float(q[r * C + c]) * s;
  }
}

std::vector<float> fp8_row_scales(const Checkpoint& ckpt, const TensorView& w) {
  const std::string name = fp8_scale_name(w.name);
  const TensorView* s = ckpt.find(name);
  MIXSERVE_CHECK(s != nullptr, w.file.string(), ": F8_E4M3 tensor ", w.name, " has no scale ", name,
                 " (F32, shape [out], [out, 1], [] or [1])");
  MIXSERVE_CHECK(s->dtype == DType::kF32, s->file.string(), ": tensor ", name, " has dtype ",
                 dtype_name(s->dtype), ", expected F32");
  const int64_t rows = w.shape.empty() ? 1 : w.shape[0];
  const bool per_channel = fp8_scale_is_per_channel(*s, rows);
  std::vector<float> v(static_cast<size_t>(s->numel()));
  s->to_float(v.data());
  for (float f : v) {
    MIXSERVE_CHECK(std::isfinite(f) && f > 0.0f, s->file.string(), ": tensor ", name, " holds ", f,
                   "; FP8 weight scales must be finite and positive");
  }
  if (!per_channel) v.assign(static_cast<size_t>(rows), v.at(0));
  return v;
}

std::vector<float> tensor_to_float(const Checkpoint& ckpt, const TensorView& w) {
  std::vector<float> out(static_cast<size_t>(w.numel()));
  if (w.dtype != DType::kF8E4M3) {
    w.to_float(out.data());
    return out;
  }
  const std::vector<float> scales = fp8_row_scales(ckpt, w);
  const int64_t rows = static_cast<int64_t>(scales.size());
  dequantize_rows_fp8(w.data, scales.data(), true, rows, w.numel() / rows, out.data());
  return out;
}

}  // namespace mixserve
