// `mixserve bench serve`: a load generator against any OpenAI-compatible server (mixserve,
// vLLM, TensorRT-LLM): Poisson arrivals at each --request-rate, or each fixed --concurrency;
// reports throughput, latency percentiles and goodput (see docs/benchmarks.md).
#include <CLI/CLI.hpp>

#include <cmath>
#include <memory>
#include <string>

#include "bench/http_load.h"
#include "bench/progress.h"
#include "bench/report.h"
#include "cli/bench_common.h"
#include "cli/command.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::cli {
namespace {

struct ServeArgs {
  BenchCommonFlags common;
  std::string base_url = "http://127.0.0.1:8000";
  std::string endpoint;  // default from --api
  std::string api = "completions";
  std::string model;
  std::string request_rate = "inf";
  std::string concurrency;
  int32_t max_concurrency = 0;
  bool stream = true;
  bool tokens_prompt = false;
  bool text_prompt = false;
  int32_t vocab_size = 32000;
  int64_t warmup = 0;
  std::string api_key;
  double timeout_s = 600.0;
  std::string device_name = "unknown";
  std::string precision = "unknown";
};

struct RunPlan {
  std::string label;
  double rate;
  int32_t max_concurrency;
};

std::string format_rate(double r) {
  if (std::isinf(r)) return "inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", r);
  return buf;
}

int run(const ServeArgs& a) {
  bench::LoadOptions load;
  load.api.kind = a.api == "chat" ? bench::ApiKind::kChat : bench::ApiKind::kCompletions;
  load.api.model = a.model;
  load.api.stream = a.stream;
  load.api_key = a.api_key;
  load.timeout_s = a.timeout_s;
  const std::string endpoint =
      !a.endpoint.empty() ? a.endpoint
                          : (a.api == "chat" ? "/v1/chat/completions" : "/v1/completions");
  std::string base = a.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  load.url = base + endpoint;
  bench::parse_http_url(load.url);  // fail early on a bad URL

  const bool tokens = a.tokens_prompt || (!a.text_prompt && a.api != "chat");
  MIXSERVE_CHECK(!(tokens && a.api == "chat"),
                 "--tokens-prompt: the chat API takes text; use --text-prompt with --api chat");
  bench::WorkloadSpec spec = a.common.workload_spec();
  spec.prompt_kind = tokens ? bench::PromptKind::kTokens : bench::PromptKind::kText;
  spec.vocab_size = a.vocab_size;
  spec.avoid_ids = bench::default_avoid_ids(-1, {});

  std::vector<RunPlan> plans;
  if (!a.concurrency.empty()) {
    for (double c : parse_number_list(a.concurrency, "--concurrency", false)) {
      MIXSERVE_CHECK(c == std::floor(c), "--concurrency ", c, " is not a whole number");
      plans.push_back({"concurrency=" + format_rate(c), INFINITY, int32_t(c)});
    }
  } else {
    for (double r : parse_number_list(a.request_rate, "--request-rate", true))
      plans.push_back({"rate=" + format_rate(r), r, a.max_concurrency});
  }

  bench::Report report;
  report.meta.mode = "serve";
  report.meta.model = a.model.empty() ? "(server default)" : a.model;
  report.meta.device = a.device_name;
  report.meta.precision = a.precision;
  report.throughput_measure = "requests_per_s";
  fill_common_meta(report.meta, a.common);
  report.meta.settings["url"] = load.url;
  report.meta.settings["api"] = a.api;
  report.meta.settings["stream"] = a.stream;
  report.meta.settings["prompt"] = std::string(tokens ? "token ids" : "text");
  report.meta.settings["max_concurrency"] = double(a.max_concurrency);
  report.meta.settings["warmup"] = double(a.warmup);
  if (!a.concurrency.empty()) report.meta.settings["concurrency"] = a.concurrency;
  else report.meta.settings["request_rate"] = a.request_rate;

  const std::vector<bench::WorkloadItem> items = bench::make_workload(spec);
  if (a.warmup > 0) {
    bench::WorkloadSpec w = spec;
    w.num_requests = a.warmup;
    w.seed = spec.seed + 1;
    w.dataset.clear();
    w.prompt_kind = tokens ? bench::PromptKind::kTokens : bench::PromptKind::kText;
    const bench::LoadResult res = bench::run_load(load, bench::make_workload(w), nullptr);
    int64_t failed = 0;
    for (const auto& r : res.records) failed += r.ok ? 0 : 1;
    MIXSERVE_CHECK(failed == 0, "warm-up: ", failed, " of ", a.warmup, " requests to ", load.url,
                   " failed; first error: ",
                   [&] {
                     for (const auto& r : res.records)
                       if (!r.ok) return r.error;
                     return std::string();
                   }());
  }
  for (size_t i = 0; i < plans.size(); ++i) {
    load.request_rate = plans[i].rate;
    load.max_concurrency = plans[i].max_concurrency;
    load.seed = a.common.seed + 1000 + i;
    // Every run after the first gets prompts of the same lengths that share no prefix with
    // earlier runs' (the same prompts again would find their KV blocks in the server's prefix
    // cache and skip prefill). A --dataset is replayed as is.
    const std::vector<bench::WorkloadItem> run_items =
        i > 0 && spec.dataset.empty() ? bench::with_fresh_prefixes(items, int(i), spec.vocab_size)
                                      : std::vector<bench::WorkloadItem>{};
    const std::vector<bench::WorkloadItem>& use = run_items.empty() ? items : run_items;
    log::info(plans[i].label, ": ", use.size(), " requests to ", load.url);
    bench::ProgressBar bar(plans[i].label, int64_t(use.size()), bench::stderr_is_terminal());
    const bench::LoadResult res = bench::run_load(load, use, &bar);
    bench::RunMetrics m = bench::compute_run_metrics(res.records, res.duration_s, a.common.slo());
    m.label = plans[i].label;
    if (!std::isinf(plans[i].rate)) m.params["request_rate"] = plans[i].rate;
    if (plans[i].max_concurrency > 0) m.params["max_concurrency"] = plans[i].max_concurrency;
    m.extra["client_cpu_s"] = res.client_cpu_s;
    m.extra["client_cpu_us_per_output_token"] =
        m.output_tokens > 0 ? res.client_cpu_s * 1e6 / double(m.output_tokens) : 0.0;
    report.runs.push_back(std::move(m));
  }
  finish_report(report, a.common);
  for (const bench::RunMetrics& m : report.runs)
    if (m.failed > 0) return 1;
  return 0;
}

const CommandRegistrar kBenchServe(
    "bench serve",
    "Online load against an OpenAI-compatible server: Poisson arrivals or fixed concurrency",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      a->common.add_to(sub);
      sub.add_option("--base-url", a->base_url, "Server address, http://HOST:PORT")
          ->capture_default_str();
      sub.add_option("--endpoint", a->endpoint,
                     "Path (default /v1/completions, or /v1/chat/completions with --api chat)");
      sub.add_option("--api", a->api, "completions or chat")
          ->check(CLI::IsMember({"completions", "chat"}))
          ->capture_default_str();
      sub.add_option("--model", a->model, "The \"model\" field of each request");
      auto* rate = sub.add_option("--request-rate", a->request_rate,
                                  "Poisson arrival rates (req/s), one run each, e.g. 1,2,4,inf "
                                  "(inf = all at once)")
                       ->capture_default_str();
      auto* conc = sub.add_option("--concurrency", a->concurrency,
                                  "Fixed concurrencies, one run each (instead of rates), e.g. "
                                  "1,8,64");
      rate->excludes(conc);
      sub.add_option("--max-concurrency", a->max_concurrency,
                     "Requests in flight at most during rate runs (0 = no cap)")
          ->check(CLI::NonNegativeNumber);
      sub.add_flag("--stream,!--no-stream", a->stream, "Stream tokens (SSE); default on");
      auto* tokens = sub.add_flag("--tokens-prompt", a->tokens_prompt,
                                  "Prompts as arrays of random token ids, for exact lengths "
                                  "(the default with --api completions)");
      sub.add_flag("--text-prompt", a->text_prompt,
                   "Prompts as text of N random common words, about N tokens (always for chat)")
          ->excludes(tokens);
      sub.add_option("--vocab-size", a->vocab_size, "Token ids of prompts are drawn below this")
          ->check(CLI::PositiveNumber)
          ->capture_default_str();
      sub.add_option("--warmup", a->warmup, "Unmeasured requests sent (all at once) first")
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--api-key", a->api_key, "Sent as Authorization: Bearer KEY");
      sub.add_option("--timeout", a->timeout_s, "Seconds a request may wait for its next bytes")
          ->check(CLI::PositiveNumber)
          ->capture_default_str();
      sub.add_option("--device-name", a->device_name,
                     "The server's device, recorded in the report (e.g. 'H100 SXM')");
      sub.add_option("--precision", a->precision, "The server's precision, recorded (e.g. fp8)");
      return [a] { return run(*a); };
    });

}  // namespace
}  // namespace mixserve::cli
