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
  int max_num_seqs = 0;        // CUDA: sequences per step (logits rows) it is sized for; 0 = tokens
  std::string quantization = "none";   // CUDA: none | fp8 (E4M3 weights + activations)
  std::string kv_cache_dtype = "auto"; // CUDA: auto (the dtype) | fp8 (E4M3 KV cache)
  bool enforce_eager = false;  // CUDA: no CUDA graphs for decode steps
  bool host_sampling = false;  // CUDA: sample on the host (logits copied back) as the CPU does
  int moe_padded_max_rows = -1;  // CUDA: largest grouped (sync-free) MoE step; -1 = default

  // Several ranks share the model (docs/parallelism.md).
  int tensor_parallel = 1;       // --tensor-parallel N: heads and expert FFN rows over N ranks
  bool expert_parallel = false;  // --expert-parallel: whole experts per rank in MoE layers
  // Multi-process launches (dist/launch.h): --nnodes M processes running N/M ranks each
  // (with --node-rank, --master-addr, --master-port), or mpirun's / torchrun's environment.
  // Unset: 0, -1, "" and 0 (rank 0's address then defaults to MASTER_ADDR / MASTER_PORT, else
  // 127.0.0.1:29500).
  int nnodes = 0;
  int node_rank = -1;
  std::string master_addr;
  int master_port = 0;
};

namespace dist {
struct LaunchInfo;
}
// Where this process stands in the launch (flags + environment); throws on inconsistencies.
dist::LaunchInfo launch_info(const BackendOptions& options);

// The backend for the options. With --tensor-parallel N > 1 in one process: N shards as
// threads behind one backend. In a multi-process launch, every process builds its rank; the
// process of rank 0 gets the backend, and every other process serves rank 0's steps inside
// this call and then gets nullptr: its command must exit (status 0) without starting an engine.
std::unique_ptr<Backend> create_backend(const BackendOptions& options);

}  // namespace mixserve
