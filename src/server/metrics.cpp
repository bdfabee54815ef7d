#include "server/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <mutex>

namespace mixserve::server {

using prometheus::Histogram;

struct ServerMetrics::Impl {
  explicit Impl(std::string model) : labels{{"model_name", std::move(model)}} {}

  prometheus::Labels labels;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  Histogram* ttft = nullptr;
  Histogram* tpot = nullptr;
  Histogram* e2e = nullptr;
  Histogram* queue = nullptr;
  prometheus::Gauge* running = nullptr;
  prometheus::Gauge* waiting = nullptr;
  prometheus::Gauge* kv_usage = nullptr;
  prometheus::Counter* prompt_tokens = nullptr;
  prometheus::Counter* generation_tokens = nullptr;
  prometheus::Counter* preemptions = nullptr;
  prometheus::Counter* prefix_hits = nullptr;
  prometheus::Counter* prefix_queries = nullptr;
  prometheus::Family<prometheus::Counter>* finished = nullptr;
  prometheus::Family<prometheus::Counter>* errors = nullptr;

  // Engine counters are cumulative; Prometheus counters only increase, so add the difference
  // since the last scrape.
  std::mutex mu;
  EngineStats last;
};

namespace {

Histogram::BucketBoundaries latency_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
          2.5,   5.0,   7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}

Histogram::BucketBoundaries per_token_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
          1.0,   2.5,    5.0,   7.5,  10.0,  20.0, 40.0, 80.0};
}

}  // namespace

ServerMetrics::ServerMetrics(std::string model_name)
    : impl_(std::make_unique<Impl>(std::move(model_name))) {
  auto& r = *impl_->registry;
  const auto& l = impl_->labels;
  auto hist = [&](const char* name, const char* help, Histogram::BucketBoundaries b) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add(l, std::move(b));
  };
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(r).Add(l);
  };
  auto counter = [&](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(l);
  };
  impl_->ttft = hist("mixserve:time_to_first_token_seconds",
                     "Time from arrival to the first output token", latency_buckets());
  impl_->tpot = hist("mixserve:time_per_output_token_seconds",
                     "Mean time between output tokens of a request after the first",
                     per_token_buckets());
  impl_->e2e = hist("mixserve:e2e_request_latency_seconds",
                    "Time from arrival to the last output token", latency_buckets());
  impl_->queue = hist("mixserve:request_queue_time_seconds",
                      "Time from arrival until the engine first scheduled the request (parsing, "
                      "tokenization, chat template, waiting for a batch slot)",
                      latency_buckets());
  impl_->running = gauge("mixserve:num_requests_running", "Sequences in the running batch");
  impl_->waiting = gauge("mixserve:num_requests_waiting", "Sequences waiting to be scheduled");
  impl_->kv_usage = gauge("mixserve:gpu_cache_usage_perc",
                          "Fraction of KV-cache blocks in use (1 = full), any device");
  impl_->prompt_tokens = counter("mixserve:prompt_tokens_total", "Prompt tokens computed");
  impl_->generation_tokens = counter("mixserve:generation_tokens_total", "Tokens generated");
  impl_->preemptions = counter("mixserve:num_preemptions_total", "Sequences preempted");
  impl_->prefix_hits = counter("mixserve:prefix_cache_hits_total",
                               "Prompt tokens taken from the prefix cache");
  impl_->prefix_queries = counter("mixserve:prefix_cache_queries_total",
                                  "Prompt tokens looked up in the prefix cache");
  impl_->finished = &prometheus::BuildCounter()
                         .Name("mixserve:request_success_total")
                         .Help("Finished requests by finish reason")
                         .Register(r);
  impl_->errors = &prometheus::BuildCounter()
                       .Name("mixserve:request_errors_total")
                       .Help("Requests answered with an error, by HTTP status")
                       .Register(r);
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::observe_queue_time(double s) { impl_->queue->Observe(s); }
void ServerMetrics::observe_time_to_first_token(double s) { impl_->ttft->Observe(s); }
void ServerMetrics::observe_time_per_output_token(double s) { impl_->tpot->Observe(s); }
void ServerMetrics::observe_e2e_latency(double s) { impl_->e2e->Observe(s); }

void ServerMetrics::count_finished(const std::string& reason) {
  prometheus::Labels l = impl_->labels;
  l["finished_reason"] = reason.rfind("error", 0) == 0 ? "error" : reason;
  impl_->finished->Add(l).Increment();
}

void ServerMetrics::count_error(int status) {
  prometheus::Labels l = impl_->labels;
  l["code"] = std::to_string(status);
  impl_->errors->Add(l).Increment();
}

std::string ServerMetrics::render(const EngineStats* stats) {
  if (stats != nullptr) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const EngineStats& s = *stats;
    EngineStats& last = impl_->last;
    impl_->running->Set(s.num_running);
    impl_->waiting->Set(s.num_waiting);
    impl_->kv_usage->Set(s.kv_usage);
    auto add = [](prometheus::Counter* c, int64_t now, int64_t before) {
      if (now > before) c->Increment(double(now - before));
    };
    add(impl_->prompt_tokens, s.prompt_tokens_computed, last.prompt_tokens_computed);
    add(impl_->generation_tokens, s.generated_tokens, last.generated_tokens);
    add(impl_->preemptions, s.preemptions, last.preemptions);
    add(impl_->prefix_hits, s.cached_prompt_tokens, last.cached_prompt_tokens);
    add(impl_->prefix_queries, s.cached_prompt_tokens + s.prompt_tokens_computed,
        last.cached_prompt_tokens + last.prompt_tokens_computed);
    last = s;
  }
  return prometheus::TextSerializer().Serialize(impl_->registry->Collect());
}

}  // namespace mixserve::server
