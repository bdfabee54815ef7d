#include "cli/engine_flags.h"

#include <CLI/CLI.hpp>

#include <filesystem>

#include "dist/launch.h"
#include "util/log.h"

namespace mixserve::cli {

void add_quantization_flags(CLI::App& app, BackendOptions& backend) {
  app.add_option("--quantization", backend.quantization,
                 "CUDA: none, or fp8 (E4M3 projection weights with per-channel scales, "
                 "activations quantized per token)")
      ->check(CLI::IsMember({"none", "fp8"}))
      ->capture_default_str();
  app.add_option("--kv-cache-dtype", backend.kv_cache_dtype,
                 "CUDA: auto (the weights' dtype) or fp8 (E4M3 KV cache, half the bytes)")
      ->check(CLI::IsMember({"auto", "fp8"}))
      ->capture_default_str();
}

void add_parallel_flags(CLI::App& app, BackendOptions& backend) {
  app.add_option("--tensor-parallel", backend.tensor_parallel,
                 "Ranks that share the model (alias -tp): attention heads and expert FFN rows "
                 "split over N (threads of one process, or spread over --nnodes processes)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_flag("--expert-parallel", backend.expert_parallel,
               "MoE layers: whole experts per rank instead of FFN rows (needs "
               "--tensor-parallel > 1 and experts divisible by it)");
  app.add_option("--nnodes", backend.nnodes,
                 "Processes of a multi-process launch, each running tensor-parallel / nnodes "
                 "ranks; start every one with its --node-rank (under mpirun: not needed)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--node-rank", backend.node_rank, "This process's index in [0, --nnodes)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--master-addr", backend.master_addr,
                 "Address where rank 0 listens for the other ranks (default MASTER_ADDR, else "
                 "127.0.0.1)");
  app.add_option("--master-port", backend.master_port,
                 "TCP port rank 0 listens on (default MASTER_PORT, else 29500)")
      ->check(CLI::Range(1, 65535));
}

bool runs_rank_zero(const BackendOptions& backend) {
  return launch_info(backend).rank_base == 0;
}

void EngineFlags::add_to(CLI::App& app, bool model_required) {
  auto* model = app.add_option("--model", backend.model,
                               "Model folder (Hugging Face layout) or synthetic:PRESET[?layers=N]");
  if (model_required) model->required();
  app.add_option("--device", backend.device, "cpu, cuda or auto (cuda when a GPU is present)")
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
      ->capture_default_str();
  app.add_option("--threads", backend.num_threads, "CPU backend threads (0 = all cores)");
  app.add_option("--dtype", backend.dtype, "CUDA weights and activations: bf16 or fp16")
      ->check(CLI::IsMember({"bf16", "fp16"}))
      ->capture_default_str();
  add_quantization_flags(app, backend);
  app.add_option("--gpu-memory-fraction", backend.gpu_memory_fraction,
                 "CUDA: share of the GPU's memory for weights, workspace and the KV cache")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  app.add_flag("--enforce-eager", backend.enforce_eager,
               "CUDA: run decode steps kernel by kernel instead of replaying CUDA graphs");
  app.add_flag("--host-sampling", backend.host_sampling,
               "CUDA: copy the logits to the host and sample there instead of on the GPU");
  add_parallel_flags(app, backend);
  app.add_option("--block-size", engine.block_size, "Tokens per KV-cache block")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--kv-cache-tokens", engine.kv_cache_tokens,
                 "KV-cache capacity in tokens (default: 16384 on the CPU, what fits in "
                 "--gpu-memory-fraction on CUDA)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-num-seqs", engine.max_num_seqs, "Sequences per step at most")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  app.add_option("--max-num-batched-tokens", engine.max_num_batched_tokens,
                 "Tokens per step at most (decode tokens + prefill chunks)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--max-model-len", engine.max_model_len,
                 "Prompt + output tokens per request at most (0 = the model's limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("!--no-prefix-caching", engine.enable_prefix_caching,
               "Do not reuse KV blocks of identical prompt prefixes");
  app.add_option("--scheduler-policy", engine.scheduler_policy,
                 "fcfs (preempts the newest request when the cache is full) or no-evict")
      ->check(CLI::IsMember({"fcfs", "no-evict"}))
      ->capture_default_str();
  // On by default for the commands (the library's EngineConfig default is off).
  engine.async_scheduling = true;
  app.add_flag("!--no-async-scheduling", engine.async_scheduling,
               "Schedule each step only after the previous one finished (by default the next "
               "step is scheduled and planned while the device computes this one)");
}

BackendOptions EngineFlags::backend_for_steps(int32_t max_step_tokens,
                                              int32_t max_step_seqs) const {
  BackendOptions o = backend;
  o.max_num_tokens = max_step_tokens;
  o.max_num_seqs = max_step_seqs;
  return o;
}

EngineBundle make_engine(const EngineFlags& flags) {
  EngineBundle bundle;
  const std::filesystem::path dir(flags.backend.model);
  if (flags.backend.model.rfind("synthetic:", 0) != 0 && std::filesystem::exists(dir / "tokenizer.json")) {
    bundle.tokenizer = Tokenizer::from_dir(dir);
  }
  std::unique_ptr<Backend> backend =
      create_backend(flags.backend_for_steps(flags.engine.max_num_batched_tokens,
                                            flags.engine.max_num_seqs));
  if (!backend) return bundle;  // a worker process: rank 0 has shut it down
  log::info("model ", flags.backend.model, " on ", backend->name());
  bundle.engine = std::make_unique<Engine>(std::move(backend), bundle.tokenizer, flags.engine);
  log::info("KV cache: ", bundle.engine->num_kv_blocks(), " blocks of ", flags.engine.block_size,
            " tokens = ", int64_t{bundle.engine->num_kv_blocks()} * flags.engine.block_size,
            " tokens; max model length ", bundle.engine->max_model_len());
  return bundle;
}

}  // namespace mixserve::cli
