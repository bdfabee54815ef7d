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
  // --max-num-batched-tokens, --max-model-len, --no-prefix-caching, --scheduler-policy.
  void add_to(CLI::App& app, bool model_required = true);
};

// Adds --quantization none|fp8 and --kv-cache-dtype auto|fp8 (also used by bench-step).
void add_quantization_flags(CLI::App& app, BackendOptions& backend);

struct EngineBundle {
  std::shared_ptr<const Tokenizer> tokenizer;  // null for synthetic models without tokenizer
  std::unique_ptr<Engine> engine;
};

// Loads the tokenizer (from the model folder) and the backend, then builds the engine. Logs the
// KV-cache capacity in tokens.
EngineBundle make_engine(const EngineFlags& flags);

}  // namespace mixserve::cli
