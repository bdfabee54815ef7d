// What `bench offline` and `bench serve` share: workload flags, SLO and latency-budget flags,
// and the end of every run: sweet spot, JSON/CSV/SVG files, and a table on stdout.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/report.h"
#include "bench/workload.h"

namespace CLI {
class App;
}

namespace mixserve::cli {

struct BenchCommonFlags {
  std::string input_len = "128";   // LengthSpec text
  std::string output_len = "128";
  int64_t num_requests = 100;
  uint64_t seed = 0;
  std::string dataset;
  std::string workload_id;
  std::string out;                 // report.json; also writes report.csv and report_*.svg
  std::optional<double> slo_ttft_ms, slo_tpot_ms, slo_e2e_ms;
  std::optional<double> latency_budget_ms, tpot_budget_ms;
  std::string budget_stat = "mean";

  void add_to(CLI::App& app);
  // Throws naming the flag on inconsistent values.
  bench::WorkloadSpec workload_spec() const;
  bench::SloSpec slo() const;
  std::optional<bench::LatencyBudget> budget() const;
};

// "1,8,64" -> {1, 8, 64}; "inf" allowed when allow_inf. Throws naming the flag.
std::vector<double> parse_number_list(const std::string& text, const std::string& flag,
                                      bool allow_inf);

// This process's command line (from /proc/self/cmdline), shell-quoted.
std::string current_command_line();

// Fills the meta fields every report has (command line, commit, timestamp, workload id).
void fill_common_meta(bench::ReportMeta& meta, const BenchCommonFlags& flags);

// Finds the sweet spot, prints the table (and the sweet spot) to stdout, writes the files.
void finish_report(bench::Report& report, const BenchCommonFlags& flags);

}  // namespace mixserve::cli
