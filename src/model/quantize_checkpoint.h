// `mixserve quantize`: a BF16/FP16/F32 checkpoint folder in, an FP8 checkpoint folder out.
//
// The projection weights (q/k/v/o_proj, the experts' w1/w3/w2 or a dense mlp's
// gate/up/down_proj) become F8_E4M3 with an F32 "<name>_scale" of shape [out] (one scale per
// output channel, model/fp8_quant.h); the embedding, norms, router and lm_head are copied
// unchanged. config.json gets quantization_config {quant_method: fp8, activation_scheme:
// dynamic}; the other non-weight files (tokenizer, generation config) are copied.
#pragma once

#include <cstdint>
#include <filesystem>

namespace mixserve {

struct QuantizeResult {
  int quantized_tensors = 0;
  int copied_tensors = 0;
  uint64_t bytes_written = 0;  // tensor bytes
  int shards = 0;
};

// Throws mixserve::Error naming the file or tensor when the input cannot be read, is already
// FP8, or `out` is the input folder.
QuantizeResult quantize_checkpoint(const std::filesystem::path& in,
                                   const std::filesystem::path& out);

}  // namespace mixserve
