// Flags shared by every command that runs the engine (generate, serve, bench offline):
// model, device, precision and the scheduler, and how they become a running Engine.
#pragma once

#include <memory>
#include <string>

#include "backend/factory.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace CLI {
class App;
}

namespace mixserve::cli {

struct EngineFlags {
  BackendOptions backend;
  EngineConfig engine;

  // Adds --model, --device, --threads, --dtype, --quantization, --kv-cache-dtype,
  // --gpu-memory-fraction, --enforce-eager, --host-sampling, --block-size, --kv-cache-tokens,
  // --max-num-seqs,
  // --max-num-batched-tokens, --max-model-len, --no-prefix-caching, --scheduler-policy, --no-async-scheduling, and the
  // parallelism flags (add_parallel_flags).
  void add_to(CLI::App& app, bool model_required = true);

  // The backend's options, its workspace sized for steps of max_step_tokens tokens and
  // max_step_seqs sequences (the backend takes it before the KV cache takes the rest of the
  // memory).
  BackendOptions backend_for_steps(int32_t max_step_tokens, int32_t max_step_seqs) const;
};

// Adds --tensor-parallel (-tp), --expert-parallel, --nnodes, --node-rank, --master-addr,
// --master-port.
void add_parallel_flags(CLI::App& app, BackendOptions& backend);

// False in the processes of a multi-process launch (--nnodes, mpirun) that do not hold rank 0:
// they serve rank 0's steps and must not start a server or print results.
bool runs_rank_zero(const BackendOptions& backend);

// Adds --quantization none|fp8 and --kv-cache-dtype auto|fp8 (also used by bench-step).
void add_quantization_flags(CLI::App& app, BackendOptions& backend);

struct EngineBundle {
  std::shared_ptr<const Tokenizer> tokenizer;  // null for synthetic models without tokenizer
  std::unique_ptr<Engine> engine;
};

// Loads the tokenizer (from the model folder) and the backend, then builds the engine. Logs the
// KV-cache capacity in tokens. In a process without rank 0 of a multi-process launch it returns
// once rank 0 has shut the workers down, with a null engine: the command then exits 0.
EngineBundle make_engine(const EngineFlags& flags);

}  // namespace mixserve::cli
