#include "model/loader.h"

#include <cmath>
#include <string_view>

#include "model/weight_names.h"
#include "util/error.h"

namespace mixserve {
namespace {

namespace fs = std::filesystem;

bool is_float16_or_wider(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_fp8_weight(const Checkpoint& ck, const TensorView& w) {
  const std::string scale_name = fp8_scale_name(w.name);
  const TensorView* scale = ck.find(scale_name);
  if (scale == nullptr) {
    throw_error(w.file.string(), ": tensor ", w.name, " is F8_E4M3 but its scale ", scale_name,
                " is missing");
  }
  if (scale->dtype != DType::kF32) {
    throw_error(scale->file.string(), ": tensor ", scale_name, " has dtype ",
                dtype_name(scale->dtype), ", expected F32");
  }
  fp8_scale_is_per_channel(*scale, w.shape[0]);  // throws on a bad shape
}

// The activation scale of an FP8 linear layer ("...q_proj.input_scale"): required by the static
// scheme, optional otherwise; when present one positive finite value in F32, BF16 or F16.
void check_fp8_input_scale(const Checkpoint& ck, const TensorView& w, bool required) {
  const std::string name = fp8_input_scale_name(w.name);
  const TensorView* s = ck.find(name);
  if (s == nullptr) {
    if (!required) return;
    throw_error(w.file.string(), ": tensor ", w.name, " is F8_E4M3 and config.json says "
                "activation_scheme \"static\", but its activation scale ", name, " is missing "
                "(or say \"dynamic\" in quantization_config)");
  }
  if (!is_float16_or_wider(s->dtype)) {
    throw_error(s->file.string(), ": tensor ", name, " has dtype ", dtype_name(s->dtype),
                ", expected F32, F16 or BF16");
  }
  if (!(s->shape.empty() || (s->shape.size() == 1 && s->shape[0] == 1))) {
    throw_error(s->file.string(), ": tensor ", name, " has shape ", shape_str(s->shape),
                ", expected [] or [1] (one activation scale per tensor)");
  }
  float v = 0.0f;
  s->to_float(&v);
  if (!(v > 0.0f) || !std::isfinite(v)) {
    throw_error(s->file.string(), ": tensor ", name, " holds ", v,
                "; an activation scale must be a positive finite number");
  }
}

}  // namespace

std::string fp8_scale_name(const std::string& weight_name) { return weight_name + "_scale"; }

std::string fp8_input_scale_name(const std::string& weight_name) {
  constexpr std::string_view kSuffix = ".weight";
  const std::string_view n = weight_name;
  const std::string_view base =
      n.size() >= kSuffix.size() && n.substr(n.size() - kSuffix.size()) == kSuffix
          ? n.substr(0, n.size() - kSuffix.size())
          : n;
  return std::string(base) + ".input_scale";
}

bool fp8_scale_is_per_channel(const TensorView& scale, int64_t rows) {
  const auto& s = scale.shape;
  if (s.empty() || (s.size() == 1 && s[0] == 1 && rows != 1)) return false;
  if ((s.size() == 1 && s[0] == rows) || (s.size() == 2 && s[0] == rows && s[1] == 1)) {
    return true;
  }
  throw_error(scale.file.string(), ": tensor ", scale.name, " has shape ", shape_str(s),
              ", expected [", rows, "] or [", rows, ",1] (per channel) or [] (per tensor)");
}

ModelFiles open_model_dir(const fs::path& dir) {
  if (!fs::exists(dir)) throw_error(dir.string(), ": model folder does not exist");
  if (!fs::is_directory(dir)) {
    throw_error(dir.string(), ": not a folder (--model takes the folder holding config.json)");
  }
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path)) {
    throw_error(config_path.string(), ": missing (a Hugging Face model folder holds config.json "
                                      "and *.safetensors; make one with `mixserve make-model`)");
  }
  ModelFiles m;
  m.dir = dir;
  m.config = ModelConfig::from_file(config_path);
  m.checkpoint = Checkpoint::open(dir);
  const std::string embed = weight_names::embed();
  for (const ExpectedTensor& t : expected_tensors(m.config)) {
    const TensorView& v = m.checkpoint->get(t.name, t.shape);
    if (is_float16_or_wider(v.dtype)) continue;
    const bool fp8_allowed = m.config.fp8 && v.shape.size() == 2 && t.name != embed;
    if (v.dtype == DType::kF8E4M3 && fp8_allowed) {
      check_fp8_weight(*m.checkpoint, v);
      check_fp8_input_scale(*m.checkpoint, v, m.config.fp8_activation_scheme == "static");
      continue;
    }
    throw_error(v.file.string(), ": tensor ", t.name, " has dtype ", dtype_name(v.dtype),
                ", expected F32, F16 or BF16",
                v.dtype == DType::kF8E4M3 && !m.config.fp8
                    ? " (F8_E4M3 needs quantization_config.quant_method \"fp8\" in config.json)"
                    : "");
  }
  return m;
}

}  // namespace mixserve
