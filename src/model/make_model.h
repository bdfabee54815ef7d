// Deterministic tiny checkpoints: `mixserve make-model --preset tiny --out DIR`.
//
// The weights depend only on (seed, tensor name, preset) — not on sharding, platform or
// standard library — so golden references made once with PyTorch stay valid wherever the
// model is rebuilt. Scales are chosen so the next-token distribution is peaked (greedy
// comparisons against PyTorch must not sit on near-ties):
//   embeddings           uniform, std 1
//   norm weights         1 + U(-0.1, 0.1)
//   attention, experts   uniform, std gain / sqrt(fan_in), gain 1
//   router               gain 3 (experts differ per token)
//   lm_head              gain 7 (logits std ~7 after the final norm)
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/dtype.h"
#include "model/weight_names.h"

namespace mixserve {

struct MakeModelOptions {
  std::string preset = "tiny";              // a preset spec (presets.h), overrides allowed
  std::filesystem::path out;                // created if missing
  int shards = 1;                           // 1: model.safetensors; N: N shards + index
  DType dtype = DType::kBF16;               // kBF16, kF16 or kF32
  uint64_t seed = 0;
  std::filesystem::path tokenizer_dir;      // empty: assets_dir() / "tokenizer/mixtral"
};

struct MadeModel {
  ModelConfig config;
  std::vector<std::filesystem::path> weight_files;
  size_t num_tensors = 0;
  uint64_t weight_bytes = 0;
};

// Writes config.json, generation_config.json, the weights and the tokenizer files into
// options.out, replacing any weight files already there.
MadeModel make_model(const MakeModelOptions& options);

// How synthetic_tensor_values draws one tensor, for generators elsewhere (the CUDA backend makes
// the same values on the device). Element i (row-major) is
//   r = mix64(key + (i + 1) * 0x9e3779b97f4a7c15)   (splitmix64's finalizer),
//   x = (2 * (r >> 40) - 2^24) * 2^-24   in (-1, 1), exact in double,
//   v = norm ? 1 + x * half_width : x * half_width   (double, no fused multiply-add),
// rounded to float.
struct SyntheticTensorParams {
  uint64_t key = 0;
  double half_width = 0.0;
  bool norm = false;
};
SyntheticTensorParams synthetic_tensor_params(const ExpectedTensor& t, uint64_t seed);

// The float32 values of one tensor before rounding to the checkpoint dtype; `out` holds
// numel(t.shape) floats. Exposed so synthetic (in-memory) models match written ones.
void synthetic_tensor_values(const ExpectedTensor& t, uint64_t seed, float* out);

// Parses "bf16" / "f16" / "f32" (also "bfloat16", "float16", "float32").
DType parse_weight_dtype(const std::string& name);

}  // namespace mixserve
