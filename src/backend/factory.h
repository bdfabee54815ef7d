// Makes the backend a command asked for: --device cpu|cuda|auto over a model folder or a
// synthetic:PRESET name.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace mixserve {

struct BackendOptions {
  std::string model;           // a checkpoint folder, or "synthetic:PRESET[?layers=N]"
  std::string device = "auto"; // cpu | cuda | auto (cuda when a GPU is present)
  int num_threads = 0;         // CPU: 0 = all cores
  std::string dtype = "bf16";  // CUDA: bf16 | fp16, the weights' and activations' type
  double gpu_memory_fraction = 0.90;  // CUDA: share of the card for weights + workspace + KV
  int max_num_tokens = 2048;   // CUDA: tokens per step the workspace is sized for
  std::string quantization = "none";   // CUDA: none | fp8 (E4M3 weights + activations)
  std::string kv_cache_dtype = "auto"; // CUDA: auto (the dtype) | fp8 (E4M3 KV cache)
  bool enforce_eager = false;  // CUDA: no CUDA graphs for decode steps
  bool host_sampling = false;  // CUDA: sample on the host (logits copied back) as the CPU does
  int moe_padded_max_rows = -1;  // CUDA: largest grouped (sync-free) MoE step; -1 = default
};

std::unique_ptr<Backend> create_backend(const BackendOptions& options);

}  // namespace mixserve
