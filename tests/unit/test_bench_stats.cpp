// Statistics, run metrics, goodput and the sweet spot on hand-checked samples. Percentile
// expectations are numpy.percentile's (linear interpolation) values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bench/run_metrics.h"
#include "bench/stats.h"
#include "util/error.h"

namespace mixserve::bench {
namespace {

TEST(BenchStats, PercentilesMatchNumpyLinear) {
  // np.percentile([1, 2, 3, 4], [0, 50, 90, 99, 100]) = [1, 2.5, 3.7, 3.97, 4]
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);
  EXPECT_NEAR(percentile(v, 90), 3.7, 1e-12);
  EXPECT_NEAR(percentile(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4.0);
  // np.percentile([15, 20, 35, 40, 50], 40) = 29.0
  EXPECT_NEAR(percentile({15, 20, 35, 40, 50}, 40), 29.0, 1e-12);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7.0);
}

TEST(BenchStats, PercentileRejectsBadInput) {
  EXPECT_THROW(percentile({}, 50), Error);
  EXPECT_THROW(percentile({1, 2}, 101), Error);
  EXPECT_THROW(percentile({1, 2}, -1), Error);
}

TEST(BenchStats, SummarizeOneToHundred) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  const Summary s = summarize(v);
  EXPECT_EQ(s.count, 100);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
  EXPECT_NEAR(s.p50, 50.5, 1e-12);   // np: 50.5
  EXPECT_NEAR(s.p90, 90.1, 1e-12);   // np: 90.1
  EXPECT_NEAR(s.p99, 99.01, 1e-12);  // np: 99.01
  EXPECT_EQ(s.min, 1.0);
  EXPECT_EQ(s.max, 100.0);
  EXPECT_DOUBLE_EQ(summary_stat(s, "p90"), s.p90);
  EXPECT_THROW(summary_stat(s, "p95"), Error);
  EXPECT_EQ(summarize({}).count, 0);
}

RequestRecord rec(double ttft, double e2e, int64_t out, int64_t in = 10) {
  RequestRecord r;
  r.ok = true;
  r.has_first_token = true;
  r.ttft_ms = ttft;
  r.e2e_ms = e2e;
  r.output_tokens = out;
  r.input_tokens = in;
  for (int64_t i = 1; i < out; ++i) r.itl_ms.push_back((e2e - ttft) / double(out - 1));
  return r;
}

TEST(BenchRunMetrics, CountsThroughputAndLatencies) {
  std::vector<RequestRecord> records = {rec(100, 1100, 11), rec(200, 2200, 21), rec(50, 50, 1)};
  RequestRecord failed;
  failed.error = "HTTP 500: boom";
  records.push_back(failed);
  records.push_back(failed);
  const RunMetrics m = compute_run_metrics(records, 2.0, SloSpec{});
  EXPECT_EQ(m.num_requests, 5);
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 2);
  EXPECT_EQ(m.errors.at("HTTP 500: boom"), 2);
  EXPECT_EQ(m.input_tokens, 30);
  EXPECT_EQ(m.output_tokens, 33);
  EXPECT_DOUBLE_EQ(m.requests_per_s, 1.5);
  EXPECT_DOUBLE_EQ(m.output_tokens_per_s, 16.5);
  EXPECT_DOUBLE_EQ(m.total_tokens_per_s, 31.5);
  // TPOT: (1100-100)/10 = 100 and (2200-200)/20 = 100; the one-token request has none.
  EXPECT_EQ(m.tpot.count, 2);
  EXPECT_DOUBLE_EQ(m.tpot.mean, 100.0);
  EXPECT_EQ(m.ttft.count, 3);
  EXPECT_NEAR(m.ttft.mean, 350.0 / 3.0, 1e-9);
  EXPECT_EQ(m.itl.count, 10 + 20);
  EXPECT_DOUBLE_EQ(m.e2e.max, 2200.0);
  EXPECT_FALSE(m.goodput_requests_per_s.has_value());
}

TEST(BenchRunMetrics, GoodputCountsRequestsMeetingEverySlo) {
  // TPOTs: 10, 20, 30, (none: one token); TTFTs 100, 300, 100, 100; E2E 1090, 2200, 2110, 100.
  const std::vector<RequestRecord> records = {rec(100, 1090, 100), rec(300, 2200, 96),
                                              rec(100, 2110, 68), rec(100, 100, 1)};
  SloSpec slo;
  slo.tpot_ms = 25;
  RunMetrics m = compute_run_metrics(records, 4.0, slo);
  EXPECT_EQ(m.good_requests, 3);  // TPOT 30 misses; the one-token request meets TPOT trivially
  EXPECT_DOUBLE_EQ(*m.goodput_requests_per_s, 0.75);
  slo.ttft_ms = 200;
  m = compute_run_metrics(records, 4.0, slo);
  EXPECT_EQ(m.good_requests, 2);  // and TTFT 300 misses
  slo.e2e_ms = 1000;
  m = compute_run_metrics(records, 4.0, slo);
  EXPECT_EQ(m.good_requests, 1);  // only the one-token request is within 1 s
  RequestRecord failed;
  EXPECT_FALSE(SloSpec{}.met_by(failed));
}

RunMetrics run_with(double req_s, double e2e_mean, double tpot_p90, int64_t failed = 0) {
  RunMetrics r;
  r.completed = 10;
  r.failed = failed;
  r.requests_per_s = req_s;
  r.output_tokens_per_s = req_s * 100;
  r.e2e.count = 10;
  r.e2e.mean = e2e_mean;
  r.tpot.count = 10;
  r.tpot.p90 = tpot_p90;
  return r;
}

TEST(BenchSweetSpot, HighestThroughputWithinBudget) {
  const std::vector<RunMetrics> runs = {run_with(1, 300, 10), run_with(4, 450, 14),
                                        run_with(8, 900, 30), run_with(6, 480, 20, /*failed=*/1),
                                        run_with(2, 350, 12)};
  const LatencyBudget e2e{"e2e", "mean", 500};
  // Run 3 would win but had a failure; run 2 is over budget.
  EXPECT_EQ(find_sweet_spot(runs, e2e, "requests_per_s"), std::optional<size_t>(1));
  EXPECT_EQ(find_sweet_spot(runs, LatencyBudget{"e2e", "mean", 1000}, "output_tokens_per_s"),
            std::optional<size_t>(2));
  EXPECT_EQ(find_sweet_spot(runs, LatencyBudget{"tpot", "p90", 13}, "requests_per_s"),
            std::optional<size_t>(4));
  EXPECT_FALSE(find_sweet_spot(runs, LatencyBudget{"e2e", "mean", 100}, "requests_per_s"));
  EXPECT_THROW(find_sweet_spot(runs, LatencyBudget{"latency", "mean", 1}, "requests_per_s"), Error);
  EXPECT_THROW(run_throughput(runs[0], "tokens"), Error);
}

}  // namespace
}  // namespace mixserve::bench
