// `mixserve bench offline`: the engine in-process, every request queued at once, one run per
// --max-batch value; reports throughput and latency statistics (see docs/benchmarks.md).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "backend/factory.h"
#include "bench/offline_runner.h"
#include "bench/progress.h"
#include "bench/report.h"
#include "cli/bench_common.h"
#include "cli/command.h"
#include "cli/engine_flags.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::cli {
namespace {

struct OfflineArgs {
  EngineFlags engine;
  BenchCommonFlags common;
  std::string max_batch;  // list; empty = --max-num-seqs
  int64_t warmup = 8;
};

std::string precision_of(const Backend& backend) {
  // The CPU reference computes in float32 whatever the checkpoint's dtype.
  if (backend.name().rfind("cpu", 0) == 0) return "fp32";
  // --quantization fp8 (the CUDA backend names it) or an FP8 checkpoint.
  if (backend.config().fp8 || backend.name().find("fp8 W8A8") != std::string::npos) return "fp8";
  return backend.config().dtype;
}

// Text prompts of a dataset become ids with the model's tokenizer.
void tokenize_text_prompts(std::vector<bench::WorkloadItem>& items, const std::string& model) {
  std::shared_ptr<const Tokenizer> tok;
  for (bench::WorkloadItem& item : items) {
    if (!item.prompt_ids.empty()) continue;
    if (!tok) {
      const std::filesystem::path dir(model);
      MIXSERVE_CHECK(std::filesystem::exists(dir / "tokenizer.json"), "--dataset has text prompts "
                     "but --model ", model, " has no tokenizer.json; give token-id prompts");
      tok = Tokenizer::from_dir(dir);
    }
    item.prompt_ids = tok->encode(item.prompt_text);
    item.input_len = int32_t(item.prompt_ids.size());
  }
}

int run(const OfflineArgs& a) {
  const std::vector<double> batches =
      a.max_batch.empty() ? std::vector<double>{double(a.engine.engine.max_num_seqs)}
                          : parse_number_list(a.max_batch, "--max-batch", false);
  bench::Report report;
  report.meta.mode = "offline";
  report.meta.model = a.engine.backend.model;
  report.throughput_measure = "output_tokens_per_s";
  fill_common_meta(report.meta, a.common);
  report.meta.settings["warmup"] = double(a.warmup);
  report.meta.settings["max_batch"] = a.max_batch.empty() ? std::to_string(int64_t(batches[0]))
                                                          : a.max_batch;
  report.meta.settings["max_num_batched_tokens"] = double(a.engine.engine.max_num_batched_tokens);
  report.meta.settings["kv_cache_tokens"] = double(a.engine.engine.kv_cache_tokens);
  report.meta.settings["block_size"] = double(a.engine.engine.block_size);
  report.meta.settings["quantization"] = a.engine.backend.quantization;
  report.meta.settings["kv_cache_dtype"] = a.engine.backend.kv_cache_dtype;

  std::vector<bench::WorkloadItem> items, warmup;
  for (size_t run = 0; run < batches.size(); ++run) {
    const int32_t b = int32_t(batches[run]);
    MIXSERVE_CHECK(double(b) == batches[run], "--max-batch ", batches[run], " is not a whole number");
    // A fresh engine per batch size: max_num_seqs is fixed at construction. A step must hold a
    // full batch of decodes.
    const int32_t step_tokens = std::max(a.engine.engine.max_num_batched_tokens, b);
    std::unique_ptr<Backend> backend = create_backend(a.engine.backend_for_steps(step_tokens, b));
    // A worker rank of a multi-process launch served this batch size's run for rank 0 (which
    // starts a fresh rendezvous per batch size); it writes no report.
    if (!backend) continue;
    if (run == 0) {
      report.meta.device = backend->name();
      report.meta.precision = precision_of(*backend);
      bench::WorkloadSpec spec = a.common.workload_spec();
      const ModelConfig& cfg = backend->config();
      spec.vocab_size = cfg.vocab_size;
      spec.avoid_ids = bench::default_avoid_ids(cfg.bos_token_id, cfg.eos_token_ids);
      items = bench::make_workload(spec);
      tokenize_text_prompts(items, a.engine.backend.model);
      spec.num_requests = std::max<int64_t>(a.warmup, 1);
      spec.seed = a.common.seed + 1;  // other prompts: the warm-up must not fill the prefix cache
      if (a.warmup > 0) {
        warmup = bench::make_workload(spec);
        tokenize_text_prompts(warmup, a.engine.backend.model);
      }
    }
    EngineConfig cfg = a.engine.engine;
    cfg.max_num_seqs = b;
    cfg.max_num_batched_tokens = step_tokens;
    Engine engine(std::move(backend), nullptr, cfg);
    const std::string label = "max_batch=" + std::to_string(b);
    log::info(label, ": ", items.size(), " requests (", warmup.size(), " warm-up), KV cache ",
              int64_t(engine.num_kv_blocks()) * cfg.block_size, " tokens");
    bench::ProgressBar bar(label, int64_t(items.size()), bench::stderr_is_terminal());
    const bench::OfflineResult res = bench::run_offline(engine, warmup, items, &bar);
    bench::RunMetrics m = bench::compute_run_metrics(res.records, res.duration_s, a.common.slo());
    m.label = label;
    m.params["max_batch"] = b;
    m.extra["engine_steps"] = double(res.stats.steps);
    m.extra["engine_preemptions"] = double(res.stats.preemptions);
    m.extra["engine_generated_tokens"] = double(res.stats.generated_tokens);
    m.extra["engine_prompt_tokens_computed"] = double(res.stats.prompt_tokens_computed);
    m.extra["engine_cached_prompt_tokens"] = double(res.stats.cached_prompt_tokens);
    m.extra["generated_tokens_per_step"] =
        res.stats.steps > 0 ? double(res.stats.generated_tokens) / double(res.stats.steps) : 0.0;
    const EngineStats& st = res.stats;
    if (st.steps > 0) {
      // Host time the device does not overlap: the step minus the backend's forward call.
      const double step_ms = 1e3 * st.step_seconds / double(st.steps);
      const double fwd_ms = 1e3 * st.forward_seconds / double(st.steps);
      m.extra["engine_step_ms_mean"] = step_ms;
      m.extra["engine_forward_ms_mean"] = fwd_ms;
      m.extra["engine_host_fraction"] =
          st.step_seconds > 0 ? 1.0 - st.forward_seconds / st.step_seconds : 0.0;
      // ... and where that host time goes.
      const double sched_ms = 1e3 * st.schedule_seconds / double(st.steps);
      const double plan_ms = 1e3 * st.plan_seconds / double(st.steps);
      const double out_ms = 1e3 * st.output_seconds / double(st.steps);
      m.extra["engine_schedule_ms_mean"] = sched_ms;
      m.extra["engine_plan_ms_mean"] = plan_ms;
      m.extra["engine_output_ms_mean"] = out_ms;
      // The host time the device waits for between two steps.
      const double gap_ms =
          st.launch_gaps > 0 ? 1e3 * st.launch_gap_seconds / double(st.launch_gaps) : 0.0;
      m.extra["engine_launch_gap_ms_mean"] = gap_ms;
      m.extra["engine_async_scheduling"] = cfg.async_scheduling ? 1.0 : 0.0;
      log::info(label, ": ", st.steps, " engine steps, ", step_ms, " ms each, of which ",
                fwd_ms, " ms in the backend's calls (host outside them: ", step_ms - fwd_ms,
                " ms a step: schedule ", sched_ms, ", plan ", plan_ms, ", output ", out_ms,
                "; the device waits ", gap_ms, " ms a step between steps, async scheduling ",
                cfg.async_scheduling ? "on" : "off", ")");
    }
    // Backend counters (CUDA: the MoE paths and the counted path's padding).
    std::map<std::string, double> counters;
    for (const auto& [name, value] : engine.backend_counters()) {
      m.extra["backend_" + name] = value;
      counters[name] = value;
    }
    if (counters["moe_counted_pairs"] > 0) {
      log::info(label, ": MoE layers of larger steps: ", int64_t(counters["moe_counted_layers"]),
                " counted grouped GEMMs (rows ",
                100.0 * (counters["moe_counted_rows"] / counters["moe_counted_pairs"] - 1.0),
                "% above the pairs: padding; w1|w3 GEMM rows ",
                100.0 * (counters["moe_counted_w13_rows"] / counters["moe_counted_pairs"] - 1.0),
                "%, w2 ",
                100.0 * (counters["moe_counted_w2_rows"] / counters["moe_counted_pairs"] - 1.0),
                "%, ", counters["moe_counted_tiers"] / counters["moe_counted_layers"],
                " launches a GEMM), ", int64_t(counters["moe_lanes_layers"]),
                " per-expert lanes");
    }
    report.runs.push_back(std::move(m));
  }
  if (!runs_rank_zero(a.engine.backend)) return 0;
  finish_report(report, a.common);
  for (const bench::RunMetrics& m : report.runs)
    if (m.failed > 0) return 1;
  return 0;
}

const CommandRegistrar kBenchOffline(
    "bench offline",
    "Offline throughput: the engine in-process, all requests queued at once, per max batch size",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<OfflineArgs>();
      a->engine.add_to(sub);
      a->common.add_to(sub);
      sub.add_option("--max-batch", a->max_batch,
                     "Comma-separated max batch sizes, one run each (sets --max-num-seqs), "
                     "e.g. 1,8,64,256,1024");
      sub.add_option("--warmup", a->warmup, "Unmeasured requests run before each measured run")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
      return [a] { return run(*a); };
    });

}  // namespace
}  // namespace mixserve::cli
