// `mixserve bench-step`: times decode steps of a fixed batch (forward + greedy sampling of
// every row: on the device where the backend samples there, else Backend::forward and the
// host Sampler), after prefilling every sequence's context. A kernel-work measurement (no
// scheduler); the serving benchmarks are `mixserve bench`.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "backend/factory.h"
#ifdef MIXSERVE_HAVE_CUDA
#include <cuda_profiler_api.h>
#endif
#include "cli/command.h"
#include "cli/engine_flags.h"
#include "engine/device_sampling.h"
#include "engine/sampler.h"
#include "util/error.h"

namespace mixserve::cli {
namespace {

constexpr int kBlockSize = 16;

// Sequence s owns blocks [s * per_seq, (s + 1) * per_seq).
BatchPlan plan_for(int batch, int first_pos, int tokens, int per_seq, int vocab) {
  BatchPlan p;
  p.max_blocks_per_seq = per_seq;
  p.seq_offsets = {0};
  for (int s = 0; s < batch; ++s) {
    for (int b = 0; b < per_seq; ++b) p.block_tables.push_back(s * per_seq + b);
    for (int pos = first_pos; pos < first_pos + tokens; ++pos) {
      p.token_ids.push_back((s * 7919 + pos * 104729) % (vocab - 3) + 3);
      p.positions.push_back(pos);
      p.slot_mapping.push_back(int64_t{s * per_seq + pos / kBlockSize} * kBlockSize +
                               pos % kBlockSize);
    }
    p.seq_offsets.push_back(p.num_tokens());
    p.context_lens.push_back(first_pos + tokens);
    p.logits_rows.push_back(p.num_tokens() - 1);
  }
  return p;
}

const CommandRegistrar kBenchStep(
    "bench-step", "Time decode steps: the forward pass and greedy sampling (no scheduler)",
    [](CLI::App& sub) -> std::function<int()> {
      struct Args {
        BackendOptions backend;
        int batch = 1, context = 512, iters = 20;
        bool prefill = false;
      };
      auto a = std::make_shared<Args>();
      sub.add_option("--model", a->backend.model, "Model folder or synthetic:PRESET")->required();
      sub.add_option("--device", a->backend.device, "cpu, cuda or auto")->capture_default_str();
      sub.add_option("--dtype", a->backend.dtype, "CUDA: bf16 or fp16")->capture_default_str();
      add_quantization_flags(sub, a->backend);
      sub.add_option("--batch", a->batch, "Sequences decoded per step")->check(CLI::Range(1, 4096));
      sub.add_option("--context", a->context, "Tokens already in each sequence's cache")
          ->check(CLI::Range(1, 1 << 20));
      sub.add_option("--iters", a->iters, "Timed decode steps")->check(CLI::Range(1, 100000));
      sub.add_flag("--prefill", a->prefill,
                   "Time prefill steps instead: --batch prompts of --context tokens each, all in "
                   "one step");
      sub.add_flag("--enforce-eager", a->backend.enforce_eager, "CUDA: no CUDA graphs");
      sub.add_flag("--host-sampling", a->backend.host_sampling,
                   "CUDA: logits to the host, sampled there");
      sub.add_option("--moe-padded-max-rows", a->backend.moe_padded_max_rows,
                     "CUDA: largest step (tokens x top-k) whose experts run grouped without a "
                     "host sync (0: never; default 256)");
      return [a] {
        const int per_seq = (a->context + a->iters + 2 + kBlockSize - 1) / kBlockSize;
        const int step_tokens = a->prefill ? a->batch * a->context : a->batch;
        a->backend.max_num_tokens = std::max(2048, step_tokens);
        std::unique_ptr<Backend> be = create_backend(a->backend);
        const int V = be->config().vocab_size;
        be->allocate_kv_cache({a->batch * per_seq, kBlockSize});
        std::vector<float> logits(size_t(a->batch) * V);
        // Prefill the contexts, several sequences a step (at most 2048 tokens a step).
        const int chunk = std::min(a->context, 2048);
        const int seqs_per_step = std::max(1, 2048 / a->context);
        for (int s0 = 0; s0 < a->batch && !a->prefill; s0 += seqs_per_step) {
          const int n = std::min(seqs_per_step, a->batch - s0);
          for (int pos = 0; pos < a->context; pos += chunk) {
            BatchPlan p = plan_for(n, pos, std::min(chunk, a->context - pos), per_seq, V);
            for (int i = 0; i < n; ++i) {
              const int s = s0 + i;
              for (int b = 0; b < per_seq; ++b) {
                p.block_tables[size_t(i) * per_seq + b] = s * per_seq + b;
              }
              for (int t = p.seq_offsets[i]; t < p.seq_offsets[i + 1]; ++t) {
                p.slot_mapping[t] = int64_t{s * per_seq + p.positions[t] / kBlockSize} *
                                        kBlockSize + p.positions[t] % kBlockSize;
              }
            }
            be->forward(p, std::span<float>(logits.data(), size_t(n) * V));
          }
        }
        const bool on_device = be->supports_device_sampling();
        std::vector<int32_t> picked(size_t(a->batch));
        SamplingParams greedy;
        greedy.temperature = 0.0f;
        SamplingBatch batch;
        for (int s = 0; s < a->batch; ++s) append_sampling_row(greedy, SampleContext{}, &batch);
        SampledTokens sampled;
        std::vector<double> ms;
        for (int i = -2; i < a->iters; ++i) {  // two untimed warm-up steps
#ifdef MIXSERVE_HAVE_CUDA
          // Profilers started with --profile-from-start off see the timed steps only.
          if (i == 0 && be->name().rfind("cuda", 0) == 0) (void)cudaProfilerStart();
#endif
          // Decode: one new token per sequence; prefill: the whole prompts again (same slots).
          const BatchPlan p = a->prefill
                                  ? plan_for(a->batch, 0, a->context, per_seq, V)
                                  : plan_for(a->batch, a->context + std::max(i, 0), 1, per_seq, V);
          const auto t0 = std::chrono::steady_clock::now();
          if (on_device) {  // returns after the ids are on the host
            be->forward_and_sample(p, batch, &sampled);
          } else {  // returns after the logits are on the host
            be->forward(p, logits);
            for (int s = 0; s < a->batch; ++s) {
              picked[s] = sample_token(std::span<float>(logits.data() + size_t(s) * V, size_t(V)),
                                       greedy, SampleContext{})
                              .id;
            }
          }
          const auto t1 = std::chrono::steady_clock::now();
          if (i >= 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
#ifdef MIXSERVE_HAVE_CUDA
        if (be->name().rfind("cuda", 0) == 0) (void)cudaProfilerStop();
#endif
        std::sort(ms.begin(), ms.end());
        const double median = ms[ms.size() / 2];
        std::printf(
            "{\"backend\":\"%s\",\"model\":\"%s\",\"mode\":\"%s\",\"batch\":%d,\"context\":%d,"
            "\"sampling\":\"%s\",\"graphs\":%s,"
            "\"iters\":%d,\"step_ms_median\":%.4f,\"step_ms_min\":%.4f,"
            "\"step_ms_max\":%.4f,\"tokens_per_s\":%.1f}\n",
            be->name().c_str(), a->backend.model.c_str(), a->prefill ? "prefill" : "decode",
            a->batch, a->context,
            on_device ? "device" : "host",
            a->backend.enforce_eager || be->name().rfind("cuda", 0) != 0 ? "false" : "true",
            a->iters, median,
            ms.front(), ms.back(), 1000.0 * step_tokens / median);
        return 0;
      };
    });

}  // namespace
}  // namespace mixserve::cli
