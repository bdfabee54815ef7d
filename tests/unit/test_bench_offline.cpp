// The offline runner on the engine with a fake backend: every request accounted for, exact
// output lengths (ignore_eos), token totals that add up, and sane timings.
#include <gtest/gtest.h>

#include <memory>

#include "bench/offline_runner.h"
#include "bench/run_metrics.h"
#include "bench/workload.h"
#include "engine/engine.h"
#include "engine_fakes.h"

namespace mixserve::bench {
namespace {

std::vector<WorkloadItem> workload(int64_t n, const char* in, const char* out, uint64_t seed) {
  WorkloadSpec spec;
  spec.num_requests = n;
  spec.input = LengthSpec::parse(in, "in");
  spec.output = LengthSpec::parse(out, "out");
  spec.vocab_size = 64;
  spec.avoid_ids = default_avoid_ids(-1, {0});
  spec.seed = seed;
  return make_workload(spec);
}

TEST(BenchOffline, EveryRequestAccountedForWithExactLengths) {
  EngineConfig cfg;
  cfg.block_size = 8;
  cfg.kv_cache_tokens = 2048;
  cfg.max_num_seqs = 5;  // fewer than requests: they queue, and TTFT grows with the queue
  cfg.max_num_batched_tokens = 64;
  // eos_bias = +1000: the fake model wants EOS at every step; ignore_eos must override it.
  Engine engine(std::make_unique<testing::FakeBackend>(64, 1000.0f), nullptr, cfg);
  const auto items = workload(17, "uniform:3:40", "uniform:1:9", 1);
  const auto warm = workload(3, "5", "2", 2);
  const OfflineResult res = run_offline(engine, warm, items, nullptr);
  ASSERT_EQ(res.records.size(), items.size());
  int64_t want_out = 0, want_in = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const RequestRecord& r = res.records[i];
    EXPECT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.output_tokens, items[i].output_len) << i;
    EXPECT_EQ(r.input_tokens, items[i].input_len) << i;
    EXPECT_EQ(int64_t(r.itl_ms.size()), r.output_tokens - 1);
    EXPECT_TRUE(r.has_first_token);
    EXPECT_GE(r.ttft_ms, 0.0);
    EXPECT_GE(r.e2e_ms, r.ttft_ms);
    want_out += items[i].output_len;
    want_in += items[i].input_len;
  }
  // The engine generated exactly the run's tokens (the warm-up's are not counted).
  EXPECT_EQ(res.stats.generated_tokens, want_out);
  EXPECT_EQ(res.stats.requests_finished, 17);
  const RunMetrics m = compute_run_metrics(res.records, res.duration_s, SloSpec{});
  EXPECT_EQ(m.completed, 17);
  EXPECT_EQ(m.failed, 0);
  EXPECT_EQ(m.output_tokens, want_out);
  EXPECT_EQ(m.input_tokens, want_in);
  EXPECT_GT(m.output_tokens_per_s, 0.0);
  EXPECT_NEAR(m.e2e.max, res.duration_s * 1000.0, 1e-6);  // the last request ends the run
}

}  // namespace
}  // namespace mixserve::bench
