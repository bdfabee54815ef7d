// Benchmark reports: one JSON document (and a CSV of its runs) that records what was measured,
// on what, from which commit and command line, so numbers can be compared across months.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "bench/run_metrics.h"

namespace mixserve::bench {

using SettingValue = std::variant<std::string, double, bool>;

struct ReportMeta {
  std::string mode;          // "offline" or "serve"
  std::string workload_id;   // PERF.md's id (OFF-128, ON-STREAM, ...), free text
  std::string command_line;  // as typed, shell-quoted where needed
  std::string commit;        // git describe
  std::string commit_source; // how `commit` was found (see build_commit())
  std::string device;        // Backend::name() offline; --device-name for a remote server
  std::string precision;
  std::string model;
  std::string timestamp_utc; // ISO 8601
  std::map<std::string, SettingValue> settings;  // workload and run options
};

struct Report {
  ReportMeta meta;
  std::vector<RunMetrics> runs;
  SloSpec slo;
  std::optional<LatencyBudget> budget;
  std::string throughput_measure = "requests_per_s";  // what the sweet spot maximizes
  std::optional<size_t> sweet_spot;                   // index into runs

  // The run whose numbers are copied to the top level of the JSON: the sweet spot if there is
  // one, else the run of highest output tokens/s.
  size_t headline_run() const;
};

std::string report_to_json(const Report& report);  // pretty-printed, ends with a newline
std::string report_to_csv(const Report& report);   // a header line, then one line per run

// The commit this binary was built from: `git describe` captured at build time when the build
// tree had git; else `git describe` run now in the source folder the binary was built from;
// else "unknown". source_out says which ("build", "runtime", "none").
std::string build_commit(std::string* source_out);
std::string shell_join(int argc, const char* const* argv);
std::string utc_timestamp();

// Writes text to path, creating parent folders; throws naming the path on failure.
void write_text_file(const std::string& path, const std::string& text);

}  // namespace mixserve::bench
