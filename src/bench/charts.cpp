#include "bench/charts.h"

#include "bench/svg_chart.h"

namespace mixserve::bench {
namespace {

std::string throughput_label(const std::string& measure) {
  if (measure == "requests_per_s") return "requests/s";
  if (measure == "output_tokens_per_s") return "output tokens/s";
  return "total tokens/s";
}

std::string subtitle(const Report& r) {
  std::string s = r.meta.workload_id.empty() ? r.meta.mode : r.meta.workload_id;
  s += " | " + r.meta.model + " | " + r.meta.device;
  if (!r.meta.precision.empty()) s += " " + r.meta.precision;
  return s + " | " + r.meta.commit;
}

bool all_completed_nothing(const Report& r) {
  for (const RunMetrics& run : r.runs)
    if (run.completed > 0) return false;
  return true;
}

// Throughput against a latency summary (mean and p90), one point per run that completed.
Chart latency_chart(const Report& r, const std::string& metric, const std::string& title,
                    const std::string& x_label) {
  Chart c;
  c.title = title;
  c.subtitle = subtitle(r);
  c.x_label = x_label;
  c.y_label = throughput_label(r.throughput_measure);
  for (const char* stat : {"mean", "p90"}) {
    ChartSeries s;
    s.name = std::string(stat) + " " + metric;
    s.dashed = std::string(stat) == "p90";
    LatencyBudget b{metric, stat, 0.0};
    for (const RunMetrics& run : r.runs) {
      if (run.completed == 0 || (metric == "tpot" && run.tpot.count == 0)) continue;
      s.points.push_back({run_latency(run, b), run_throughput(run, r.throughput_measure), run.label});
    }
    c.series.push_back(std::move(s));
  }
  if (r.budget && r.budget->metric == metric) {
    c.x_budget = r.budget->ms;
    c.x_budget_label = "budget: " + r.budget->stat + " " + metric + " " +
                       format_number(r.budget->ms) + " ms";
    if (r.sweet_spot) {
      const RunMetrics& run = r.runs[*r.sweet_spot];
      c.marker = ChartPoint{run_latency(run, *r.budget), run_throughput(run, r.throughput_measure),
                            "sweet spot: " + run.label + ", " +
                                format_number(run_throughput(run, r.throughput_measure)) + " " +
                                throughput_label(r.throughput_measure)};
    }
  }
  return c;
}

}  // namespace

std::map<std::string, std::string> make_charts(const Report& r) {
  std::map<std::string, std::string> out;
  if (r.runs.empty() || all_completed_nothing(r)) return out;

  bool by_batch = true;
  for (const RunMetrics& run : r.runs) by_batch = by_batch && run.params.count("max_batch");
  if (by_batch) {
    Chart c;
    c.title = "Offline throughput by batch size";
    c.subtitle = subtitle(r);
    c.x_label = "max batch size (sequences per step)";
    c.y_label = "tokens/s";
    c.x_log2 = true;
    ChartSeries out_tok{"output tokens/s", {}, false}, total{"total tokens/s", {}, true};
    for (const RunMetrics& run : r.runs) {
      const double b = run.params.at("max_batch");
      out_tok.points.push_back({b, run.output_tokens_per_s, format_number(run.output_tokens_per_s)});
      total.points.push_back({b, run.total_tokens_per_s, ""});
    }
    c.series = {out_tok, total};
    if (r.sweet_spot) {
      const RunMetrics& run = r.runs[*r.sweet_spot];
      c.marker = ChartPoint{run.params.at("max_batch"), run.output_tokens_per_s,
                            "sweet spot: " + run.label};
    }
    out["tokens_per_s_vs_batch"] = render_svg(c);
  }

  out["throughput_vs_tpot"] = render_svg(latency_chart(
      r, "tpot", "Throughput vs time per output token", "TPOT (ms)"));
  out["throughput_vs_e2e"] = render_svg(latency_chart(
      r, "e2e", "Throughput vs end-to-end latency", "end-to-end latency (ms)"));

  if (r.meta.mode == "serve") {
    Chart c;
    c.title = "Time to first token vs load";
    c.subtitle = subtitle(r);
    c.x_label = "achieved requests/s";
    c.y_label = "TTFT (ms)";
    for (const char* stat : {"mean", "p90", "p99"}) {
      ChartSeries s;
      s.name = std::string(stat) + " TTFT";
      s.dashed = std::string(stat) != "mean";
      for (const RunMetrics& run : r.runs) {
        if (run.ttft.count == 0) continue;
        s.points.push_back({run.requests_per_s, summary_stat(run.ttft, stat), run.label});
      }
      c.series.push_back(std::move(s));
    }
    out["ttft_vs_rate"] = render_svg(c);
  }
  return out;
}

}  // namespace mixserve::bench
