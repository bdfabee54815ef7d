#include "bench/run_metrics.h"

#include "util/error.h"

namespace mixserve::bench {

bool SloSpec::met_by(const RequestRecord& r) const {
  if (!r.ok) return false;
  if (ttft_ms && (!r.has_first_token || r.ttft_ms > *ttft_ms)) return false;
  if (tpot_ms && r.has_tpot() && r.tpot_ms() > *tpot_ms) return false;
  if (e2e_ms && r.e2e_ms > *e2e_ms) return false;
  return true;
}

RunMetrics compute_run_metrics(const std::vector<RequestRecord>& records, double duration_s,
                               const SloSpec& slo) {
  RunMetrics m;
  m.num_requests = int64_t(records.size());
  m.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestRecord& r : records) {
    if (!r.ok) {
      ++m.failed;
      ++m.errors[r.error.empty() ? "unknown error" : r.error];
      continue;
    }
    ++m.completed;
    m.input_tokens += r.input_tokens;
    m.output_tokens += r.output_tokens;
    if (r.has_first_token) ttft.push_back(r.ttft_ms);
    if (r.has_tpot()) tpot.push_back(r.tpot_ms());
    itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
    e2e.push_back(r.e2e_ms);
    if (slo.any() && slo.met_by(r)) ++m.good_requests;
  }
  if (duration_s > 0.0) {
    m.requests_per_s = double(m.completed) / duration_s;
    m.output_tokens_per_s = double(m.output_tokens) / duration_s;
    m.total_tokens_per_s = double(m.input_tokens + m.output_tokens) / duration_s;
    if (slo.any()) m.goodput_requests_per_s = double(m.good_requests) / duration_s;
  } else if (slo.any()) {
    m.goodput_requests_per_s = 0.0;
  }
  m.ttft = summarize(std::move(ttft));
  m.tpot = summarize(std::move(tpot));
  m.itl = summarize(std::move(itl));
  m.e2e = summarize(std::move(e2e));
  return m;
}

double run_latency(const RunMetrics& run, const LatencyBudget& budget) {
  if (budget.metric == "e2e") return summary_stat(run.e2e, budget.stat);
  if (budget.metric == "tpot") return summary_stat(run.tpot, budget.stat);
  if (budget.metric == "ttft") return summary_stat(run.ttft, budget.stat);
  throw_error("latency budget metric '", budget.metric, "' is not one of e2e, tpot, ttft");
}

double run_throughput(const RunMetrics& run, const std::string& throughput) {
  if (throughput == "requests_per_s") return run.requests_per_s;
  if (throughput == "output_tokens_per_s") return run.output_tokens_per_s;
  if (throughput == "total_tokens_per_s") return run.total_tokens_per_s;
  throw_error("throughput measure '", throughput,
              "' is not one of requests_per_s, output_tokens_per_s, total_tokens_per_s");
}

std::optional<size_t> find_sweet_spot(const std::vector<RunMetrics>& runs,
                                      const LatencyBudget& budget, const std::string& throughput) {
  std::optional<size_t> best;
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunMetrics& r = runs[i];
    // A run with failures or no latency samples cannot vouch for its latency.
    if (r.completed == 0 || r.failed > 0) continue;
    const double latency = run_latency(r, budget);
    if (budget.metric == "tpot" && r.tpot.count == 0) continue;
    if (latency > budget.ms) continue;
    if (!best || run_throughput(r, throughput) > run_throughput(runs[*best], throughput)) best = i;
  }
  return best;
}

}  // namespace mixserve::bench
