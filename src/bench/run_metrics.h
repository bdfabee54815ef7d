// Per-request measurements, and what one benchmark run reports from them: throughput,
// latency statistics, goodput under SLOs. Times are milliseconds, rates per second.
//
//   TTFT = first output token's arrival - request start
//   ITL  = gaps between successive token arrivals of one request (one per arrival after the first)
//   TPOT = (E2E - TTFT) / (output tokens - 1), per request with at least 2 output tokens
//   E2E  = last byte / last token - request start
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/stats.h"

namespace mixserve::bench {

struct RequestRecord {
  bool ok = false;
  std::string error;           // why it failed (HTTP status, connection error, engine error)
  int64_t input_tokens = 0;    // from the server's usage when given, else the workload's count
  int64_t output_tokens = 0;   // from usage when given, else one per token arrival
  bool has_first_token = false;
  double ttft_ms = 0.0;
  double e2e_ms = 0.0;
  std::vector<double> itl_ms;

  // Only defined for requests with >= 2 output tokens and a first token.
  bool has_tpot() const { return ok && has_first_token && output_tokens >= 2; }
  double tpot_ms() const { return (e2e_ms - ttft_ms) / double(output_tokens - 1); }
};

// Service-level objectives, each optional; a request is "good" when it completed and meets
// every one that is set (TPOT is met trivially by a one-token output).
struct SloSpec {
  std::optional<double> ttft_ms, tpot_ms, e2e_ms;
  bool any() const { return ttft_ms || tpot_ms || e2e_ms; }
  bool met_by(const RequestRecord& r) const;
};

struct RunMetrics {
  std::string label;                      // "max_batch=64", "rate=4", "concurrency=8"
  std::map<std::string, double> params;   // the knob of this run: max_batch, request_rate, ...
  int64_t num_requests = 0;               // measured requests sent (warm-up excluded)
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t input_tokens = 0;               // over completed requests
  int64_t output_tokens = 0;              // over completed requests
  double duration_s = 0.0;                // first request start to last request end
  double requests_per_s = 0.0;            // completed / duration
  double output_tokens_per_s = 0.0;
  double total_tokens_per_s = 0.0;        // (input + output) / duration
  Summary ttft, tpot, itl, e2e;           // ms, over completed requests
  std::optional<double> goodput_requests_per_s;  // set when an SLO is
  int64_t good_requests = 0;
  std::map<std::string, int64_t> errors;  // failure message -> count
  std::map<std::string, double> extra;    // e.g. client_cpu_s, client_cpu_us_per_output_token
};

RunMetrics compute_run_metrics(const std::vector<RequestRecord>& records, double duration_s,
                               const SloSpec& slo);

// The sweet spot: the run of highest throughput whose latency statistic meets a budget.
struct LatencyBudget {
  std::string metric = "e2e";  // "e2e", "tpot" or "ttft"
  std::string stat = "mean";   // a summary_stat() name
  double ms = 0.0;
};
double run_latency(const RunMetrics& run, const LatencyBudget& budget);  // throws on bad names
// throughput: "requests_per_s", "output_tokens_per_s" or "total_tokens_per_s".
double run_throughput(const RunMetrics& run, const std::string& throughput);
// Index of the sweet spot among runs with completed requests; nullopt when none meets it.
std::optional<size_t> find_sweet_spot(const std::vector<RunMetrics>& runs,
                                      const LatencyBudget& budget, const std::string& throughput);

}  // namespace mixserve::bench
