// The standard charts of a benchmark report, as SVG files beside the JSON:
//   tokens_per_s_vs_batch   output and total tokens/s against max batch size (offline sweeps)
//   throughput_vs_tpot      throughput against mean and p90 TPOT, one point per run
//   throughput_vs_e2e       throughput against mean and p90 end-to-end latency
//   ttft_vs_rate            mean/p90/p99 TTFT against achieved requests/s (serve)
// The sweet spot, when a latency budget found one, is ringed on every chart it belongs to, and
// the budget is a dashed line on the chart whose x axis is the budget's metric.
#pragma once

#include <map>
#include <string>

#include "bench/report.h"

namespace mixserve::bench {

// Chart name -> SVG text; only the charts the report has data for.
std::map<std::string, std::string> make_charts(const Report& report);

}  // namespace mixserve::bench
