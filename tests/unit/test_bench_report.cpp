// Reports: the JSON's fields and headline, CSV rows, SVG charts (structure, sweet-spot mark,
// escaping), tick choice, the progress line, the recorded command line and commit.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/charts.h"
#include "bench/progress.h"
#include "bench/report.h"
#include "bench/svg_chart.h"

namespace mixserve::bench {
namespace {

RunMetrics run(const std::string& label, double req_s, double tok_s, double e2e, double tpot) {
  RunMetrics r;
  r.label = label;
  r.num_requests = r.completed = 10;
  r.output_tokens = 1280;
  r.input_tokens = 1280;
  r.duration_s = 10.0 / req_s;
  r.requests_per_s = req_s;
  r.output_tokens_per_s = tok_s;
  r.total_tokens_per_s = 2 * tok_s;
  r.e2e = {10, e2e, e2e, e2e * 1.2, e2e * 1.3, e2e / 2, e2e * 1.4};
  r.tpot = {10, tpot, tpot, tpot * 1.1, tpot * 1.2, tpot / 2, tpot * 1.3};
  r.ttft = {10, 50, 40, 80, 90, 10, 95};
  r.itl = r.tpot;
  return r;
}

Report sample(const std::string& mode) {
  Report rep;
  rep.meta.mode = mode;
  rep.meta.workload_id = "ON-STREAM";
  rep.meta.model = "tiny <model> & co";
  rep.meta.device = "cpu";
  rep.meta.commit = "abc123";
  rep.meta.settings["stream"] = true;
  rep.meta.settings["num_requests"] = 10.0;
  rep.meta.settings["url"] = std::string("http://x/v1/completions");
  rep.runs = {run("rate=1", 1, 128, 300, 10), run("rate=2", 2, 256, 450, 14),
              run("rate=4", 3.5, 448, 900, 30)};
  rep.runs[0].params["request_rate"] = 1;
  rep.runs[1].goodput_requests_per_s = 1.5;
  rep.budget = LatencyBudget{"e2e", "mean", 500};
  rep.sweet_spot = find_sweet_spot(rep.runs, *rep.budget, rep.throughput_measure);
  return rep;
}

TEST(BenchReport, JsonHasContractFieldsAndHeadlineIsTheSweetSpot) {
  const Report rep = sample("serve");
  ASSERT_EQ(rep.sweet_spot, std::optional<size_t>(1));
  const auto j = nlohmann::json::parse(report_to_json(rep));
  for (const char* k : {"mode", "workload_id", "command_line", "commit", "commit_source",
                        "device", "precision", "model", "timestamp_utc", "settings", "runs",
                        "output_tokens_per_s", "requests_per_s", "total_tokens_per_s", "ttft",
                        "tpot", "itl", "e2e", "num_requests", "completed", "failed",
                        "input_tokens", "output_tokens", "sweet_spot", "latency_budget"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"mean", "p50", "p90", "p99", "min", "max"}) EXPECT_TRUE(j["tpot"].contains(k));
  EXPECT_EQ(j["headline_run"], 1);
  EXPECT_EQ(j["requests_per_s"], 2.0);
  EXPECT_EQ(j["sweet_spot"]["label"], "rate=2");
  EXPECT_EQ(j["sweet_spot"]["latency_ms"], 450.0);
  EXPECT_EQ(j["runs"].size(), 3u);
  EXPECT_EQ(j["runs"][0]["params"]["request_rate"], 1.0);
  EXPECT_EQ(j["runs"][1]["goodput_requests_per_s"], 1.5);
  EXPECT_TRUE(j["runs"][0]["goodput_requests_per_s"].is_null());
  EXPECT_EQ(j["settings"]["stream"], true);
  EXPECT_EQ(j["settings"]["url"], "http://x/v1/completions");
  EXPECT_TRUE(j["slo"].is_null());

  Report no_budget = rep;
  no_budget.budget.reset();
  no_budget.sweet_spot.reset();
  const auto j2 = nlohmann::json::parse(report_to_json(no_budget));
  EXPECT_EQ(j2["headline_run"], 2);  // the highest output tokens/s
  EXPECT_TRUE(j2["sweet_spot"].is_null());
}

TEST(BenchReport, CsvHasOneLinePerRun) {
  const std::string csv = report_to_csv(sample("serve"));
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < csv.size()) {
    const size_t nl = csv.find('\n', pos);
    lines.push_back(csv.substr(pos, nl - pos));
    pos = nl + 1;
  }
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].rfind("workload_id,label,num_requests", 0), 0u);
  EXPECT_NE(lines[0].find("tpot_p90_ms"), std::string::npos);
  EXPECT_EQ(lines[2].rfind("ON-STREAM,rate=2,10,10,0,1280,1280,", 0), 0u) << lines[2];
  const auto columns = [](const std::string& l) { return std::count(l.begin(), l.end(), ','); };
  for (const auto& l : lines) EXPECT_EQ(columns(l), columns(lines[0]));
}

TEST(BenchReport, ServeChartsMarkTheSweetSpotAndEscapeText) {
  const auto charts = make_charts(sample("serve"));
  ASSERT_EQ(charts.size(), 3u);  // no batch chart without max_batch
  for (const auto& [name, svg] : charts) {
    EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u) << name;
    EXPECT_NE(svg.find("</svg>"), std::string::npos);
    EXPECT_NE(svg.find("tiny &lt;model&gt; &amp; co"), std::string::npos) << name;
    EXPECT_EQ(svg.find("<model>"), std::string::npos);
    EXPECT_EQ(std::count(svg.begin(), svg.end(), '<'), std::count(svg.begin(), svg.end(), '>'));
  }
  const std::string& e2e = charts.at("throughput_vs_e2e");
  EXPECT_NE(e2e.find("sweet spot: rate=2"), std::string::npos);
  EXPECT_NE(e2e.find("budget: mean e2e 500 ms"), std::string::npos);
  EXPECT_EQ(charts.at("throughput_vs_tpot").find("budget:"), std::string::npos);
  EXPECT_NE(charts.at("ttft_vs_rate").find("p99 TTFT"), std::string::npos);
}

TEST(BenchReport, OfflineBatchChartOnLog2Axis) {
  Report rep = sample("offline");
  for (size_t i = 0; i < rep.runs.size(); ++i) rep.runs[i].params["max_batch"] = double(1 << (3 * i));
  const auto charts = make_charts(rep);
  ASSERT_TRUE(charts.count("tokens_per_s_vs_batch"));
  EXPECT_FALSE(charts.count("ttft_vs_rate"));
  const std::string& svg = charts.at("tokens_per_s_vs_batch");
  for (const char* tick : {">1<", ">2<", ">4<", ">8<", ">16<", ">32<", ">64<"})
    EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  Report empty = rep;
  for (auto& r : empty.runs) r.completed = 0;
  EXPECT_TRUE(make_charts(empty).empty());
}

TEST(BenchReport, NiceTicksAndNumbers) {
  EXPECT_EQ(nice_ticks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  EXPECT_EQ(nice_ticks(0, 0.9, 4), (std::vector<double>{0, 0.25, 0.5, 0.75, 1.0}));
  const auto t = nice_ticks(0, 16789, 6);
  EXPECT_EQ(t.front(), 0);
  EXPECT_GE(t.back(), 16789);  // the axis covers the data
  EXPECT_LT(t[t.size() - 2], 16789);
  EXPECT_EQ(format_number(1024), "1024");
  EXPECT_EQ(format_number(12.345), "12.35");
  EXPECT_EQ(xml_escape("a<b&\"c\">"), "a&lt;b&amp;&quot;c&quot;&gt;");
}

TEST(BenchReport, ProgressLineAndCommandLine) {
  EXPECT_EQ(ProgressBar::render("b=8", 5, 10, 2.0, 10), "b=8 [#####.....] 5/10  2.0s  eta 2.0s");
  EXPECT_EQ(ProgressBar::render("", 10, 10, 4.25, 4), "[####] 10/10  4.2s");
  const char* argv[] = {"mixserve", "bench", "--dataset", "my file.jsonl", "it's"};
  EXPECT_EQ(shell_join(5, argv), "mixserve bench --dataset 'my file.jsonl' 'it'\\''s'");
  std::string source;
  EXPECT_FALSE(build_commit(&source).empty());
  EXPECT_TRUE(source == "build" || source == "runtime" || source == "none") << source;
}

}  // namespace
}  // namespace mixserve::bench
