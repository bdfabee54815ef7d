#include "cli/bench_common.h"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>

#include "bench/charts.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::cli {

void BenchCommonFlags::add_to(CLI::App& app) {
  app.add_option("--input-len", input_len,
                 "Prompt tokens: N, normal:MEAN:STDDEV or uniform:MIN:MAX")
      ->capture_default_str();
  app.add_option("--output-len", output_len,
                 "Output tokens (exact: ignore_eos): N, normal:MEAN:STDDEV or uniform:MIN:MAX")
      ->capture_default_str();
  app.add_option("--num-requests", num_requests, "Measured requests per run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", seed, "Seed of prompts, lengths and arrivals")->capture_default_str();
  app.add_option("--dataset", dataset,
                 "JSONL file of requests: {\"prompt\": text|[ids], \"output_len\": N}")
      ->check(CLI::ExistingFile);
  app.add_option("--workload-id", workload_id,
                 "Workload id recorded in the report (PERF.md: OFF-128, ON-STREAM, ...)");
  app.add_option("--out", out,
                 "Report FILE.json; also writes FILE.csv and FILE_<chart>.svg beside it");
  app.add_option("--slo-ttft", slo_ttft_ms, "SLO on time to first token (ms), for goodput");
  app.add_option("--slo-tpot", slo_tpot_ms, "SLO on time per output token (ms), for goodput");
  app.add_option("--slo-e2e", slo_e2e_ms, "SLO on end-to-end latency (ms), for goodput");
  auto* e2e = app.add_option("--latency-budget-ms", latency_budget_ms,
                             "Sweet spot: highest throughput whose end-to-end latency meets this");
  auto* tpot = app.add_option("--tpot-budget-ms", tpot_budget_ms,
                              "Sweet spot: highest throughput whose TPOT meets this");
  e2e->excludes(tpot);
  app.add_option("--budget-stat", budget_stat, "Latency statistic the budget applies to")
      ->check(CLI::IsMember({"mean", "p50", "p90", "p99", "max"}))
      ->capture_default_str();
}

bench::WorkloadSpec BenchCommonFlags::workload_spec() const {
  bench::WorkloadSpec spec;
  spec.input = bench::LengthSpec::parse(input_len, "--input-len");
  spec.output = bench::LengthSpec::parse(output_len, "--output-len");
  spec.num_requests = num_requests;
  spec.seed = seed;
  spec.dataset = dataset;
  return spec;
}

bench::SloSpec BenchCommonFlags::slo() const {
  bench::SloSpec s;
  s.ttft_ms = slo_ttft_ms;
  s.tpot_ms = slo_tpot_ms;
  s.e2e_ms = slo_e2e_ms;
  return s;
}

std::optional<bench::LatencyBudget> BenchCommonFlags::budget() const {
  if (latency_budget_ms) return bench::LatencyBudget{"e2e", budget_stat, *latency_budget_ms};
  if (tpot_budget_ms) return bench::LatencyBudget{"tpot", budget_stat, *tpot_budget_ms};
  return std::nullopt;
}

std::vector<double> parse_number_list(const std::string& text, const std::string& flag,
                                      bool allow_inf) {
  std::vector<double> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = text.find(',', pos);
    const std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos
                                                                          : comma - pos);
    if (allow_inf && (item == "inf" || item == "Inf")) {
      out.push_back(std::numeric_limits<double>::infinity());
    } else {
      size_t used = 0;
      double v = 0.0;
      try {
        v = std::stod(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      MIXSERVE_CHECK(!item.empty() && used == item.size() && std::isfinite(v) && v > 0.0, flag,
                     " '", text, "': '", item, "' is not a positive number",
                     allow_inf ? " or inf" : "", " (expected a list like 1,8,64)");
      out.push_back(v);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::string current_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::string cur;
  for (char c : raw) {
    if (c == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return bench::shell_join(int(argv.size()), argv.data());
}

void fill_common_meta(bench::ReportMeta& meta, const BenchCommonFlags& flags) {
  meta.workload_id = flags.workload_id;
  meta.command_line = current_command_line();
  meta.commit = bench::build_commit(&meta.commit_source);
  meta.timestamp_utc = bench::utc_timestamp();
  meta.settings["input_len"] = flags.dataset.empty() ? flags.input_len : std::string("dataset");
  meta.settings["output_len"] = flags.output_len;
  meta.settings["num_requests"] = double(flags.num_requests);
  meta.settings["seed"] = double(flags.seed);
  if (!flags.dataset.empty()) meta.settings["dataset"] = flags.dataset;
}

namespace {

void print_table(const bench::Report& report) {
  std::printf("%-20s %6s %6s %9s %11s %11s %9s %9s %9s %9s %9s %9s\n", "run", "done", "failed",
              "req/s", "out tok/s", "total tok/s", "TTFT mean", "TTFT p90", "TPOT mean",
              "TPOT p90", "E2E mean", "E2E p90");
  for (const bench::RunMetrics& r : report.runs) {
    std::printf("%-20s %6lld %6lld %9.3f %11.1f %11.1f %9.2f %9.2f %9.3f %9.3f %9.1f %9.1f\n",
                r.label.c_str(), (long long)r.completed, (long long)r.failed, r.requests_per_s,
                r.output_tokens_per_s, r.total_tokens_per_s, r.ttft.mean, r.ttft.p90,
                r.tpot.mean, r.tpot.p90, r.e2e.mean, r.e2e.p90);
    if (r.goodput_requests_per_s)
      std::printf("%-20s goodput %.3f req/s (%lld of %lld requests within the SLOs)\n", "",
                  *r.goodput_requests_per_s, (long long)r.good_requests,
                  (long long)r.num_requests);
    for (const auto& [why, count] : r.errors)
      std::printf("%-20s %lld failed: %s\n", "", (long long)count, why.c_str());
  }
  if (report.budget) {
    const bench::LatencyBudget& b = *report.budget;
    if (report.sweet_spot) {
      const bench::RunMetrics& r = report.runs[*report.sweet_spot];
      std::printf("sweet spot (%s %s <= %g ms): %s, %.3f %s at %s %s %.2f ms\n", b.stat.c_str(),
                  b.metric.c_str(), b.ms, r.label.c_str(),
                  bench::run_throughput(r, report.throughput_measure),
                  report.throughput_measure.c_str(), b.stat.c_str(), b.metric.c_str(),
                  bench::run_latency(r, b));
    } else {
      std::printf("sweet spot (%s %s <= %g ms): no run meets the budget\n", b.stat.c_str(),
                  b.metric.c_str(), b.ms);
    }
  }
  std::fflush(stdout);
}

}  // namespace

void finish_report(bench::Report& report, const BenchCommonFlags& flags) {
  report.slo = flags.slo();
  report.budget = flags.budget();
  if (report.budget)
    report.sweet_spot = bench::find_sweet_spot(report.runs, *report.budget,
                                               report.throughput_measure);
  print_table(report);
  if (flags.out.empty()) return;
  std::string stem = flags.out;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".json") == 0)
    stem.resize(stem.size() - 5);
  bench::write_text_file(flags.out, bench::report_to_json(report));
  bench::write_text_file(stem + ".csv", bench::report_to_csv(report));
  std::string written = flags.out + ", " + stem + ".csv";
  for (const auto& [name, svg] : bench::make_charts(report)) {
    bench::write_text_file(stem + "_" + name + ".svg", svg);
    written += ", " + stem + "_" + name + ".svg";
  }
  log::info("wrote ", written);
}

}  // namespace mixserve::cli
