// Opening a model folder: config.json + the checkpoint, checked against each other.
//
// After open_model_dir returns, every tensor of expected_tensors(config) is present with the
// expected shape and a float dtype, so backends can load weights without re-checking.
//
// FP8 checkpoints (config.fp8, quantization_config.quant_method == "fp8"): a linear-layer weight
// (every 2-D tensor except the embedding) may be F8_E4M3; it then needs an F32 tensor named
// "<weight name>_scale" (e.g. "...q_proj.weight_scale"), the dequantization multiplier, of shape
//   [out] or [out, 1]   per output channel (row), or
//   [] or [1]           one scale for the whole tensor.
// Embeddings and norms are never FP8.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "model/config.h"
#include "model/safetensors.h"

namespace mixserve {

struct ModelFiles {
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;
  std::filesystem::path dir;
};

// Reads <dir>/config.json and the checkpoint, and validates them together; throws
// mixserve::Error naming the file and tensor on any mismatch.
ModelFiles open_model_dir(const std::filesystem::path& dir);

// The name of the scale tensor of an FP8 weight: "<weight_name>_scale".
std::string fp8_scale_name(const std::string& weight_name);
// The name of an FP8 weight's activation (input) scale: "...q_proj.weight" ->
// "...q_proj.input_scale". open_model_dir checks it (required under activation_scheme
// "static", else optional): one positive finite F32 / BF16 / F16 value, shape [] or [1].
std::string fp8_input_scale_name(const std::string& weight_name);

// True when `scale` has one value per row of a weight with `rows` rows ([rows] or [rows, 1]);
// false for a per-tensor scale ([] or [1]). Throws for any other shape.
bool fp8_scale_is_per_channel(const TensorView& scale, int64_t rows);

}  // namespace mixserve
