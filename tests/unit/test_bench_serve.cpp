// The load generator against a tiny local OpenAI-like server (bench_test_server.h): every
// request accounted for, tokens from usage or from chunks, failures counted, the concurrency
// cap held, chat and non-streaming modes.
#include <gtest/gtest.h>

#include <algorithm>

#include <cmath>

#include "bench/http_load.h"
#include "bench/run_metrics.h"
#include "bench/workload.h"
#include "bench_test_server.h"
#include "util/error.h"

namespace mixserve::bench {
namespace {

std::vector<WorkloadItem> items(int64_t n, PromptKind kind = PromptKind::kTokens) {
  WorkloadSpec spec;
  spec.num_requests = n;
  spec.input = LengthSpec::parse("uniform:4:12", "in");
  spec.output = LengthSpec::parse("uniform:1:6", "out");
  spec.prompt_kind = kind;
  return make_workload(spec);
}

TEST(BenchServe, StreamsAreMeasuredAndCountsAddUp) {
  testing::BenchTestServer server;
  LoadOptions o;
  o.url = server.url("/v1/completions");
  o.request_rate = 400.0;
  const auto work = items(40);
  const LoadResult res = run_load(o, work, nullptr);
  ASSERT_EQ(res.records.size(), 40u);
  EXPECT_EQ(server.requests.load(), 40);
  int64_t out = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    const RequestRecord& r = res.records[i];
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.output_tokens, work[i].output_len);  // from usage
    EXPECT_EQ(r.input_tokens, work[i].input_len);    // usage: the prompt array's length
    EXPECT_EQ(int64_t(r.itl_ms.size()), r.output_tokens - 1);
    EXPECT_GT(r.ttft_ms, 0.0);
    EXPECT_GE(r.e2e_ms, r.ttft_ms);
    out += r.output_tokens;
  }
  const RunMetrics m = compute_run_metrics(res.records, res.duration_s, SloSpec{});
  EXPECT_EQ(m.completed, 40);
  EXPECT_EQ(m.output_tokens, out);
  // 40 Poisson arrivals at 400/s take about 0.1 s to send.
  EXPECT_GT(res.duration_s, 0.03);
  EXPECT_GE(res.client_cpu_s, 0.0);
  // Every body asked for what the benchmark needs.
  for (const auto& b : server.bodies) {
    EXPECT_EQ(b["ignore_eos"], true);
    EXPECT_EQ(b["stream_options"]["include_usage"], true);
    EXPECT_TRUE(b["prompt"].is_array());
  }
}

TEST(BenchServe, TokensAreTimedAsTheyArriveNotWhenTheBufferFills) {
  testing::BenchTestServer server;
  server.token_delay_ms = 60;  // the server sleeps before each token
  LoadOptions o;
  o.url = server.url("/v1/completions");
  WorkloadItem item;
  item.prompt_ids = {5, 6};
  item.input_len = 2;
  item.output_len = 3;
  const LoadResult res = run_load(o, {item, item}, nullptr);
  for (const RequestRecord& r : res.records) {
    ASSERT_TRUE(r.ok) << r.error;
    ASSERT_EQ(r.itl_ms.size(), 2u);
    // The sleeps guarantee three tokens sent >= 60 ms apart. A client that timestamps on
    // arrival sees them apart; one that waits for a full read buffer sees all three at once
    // (gaps ~0, TTFT == E2E). Arrival times on a loaded machine can bunch two tokens together,
    // so only bounds that survive one late wake-up are asserted: the whole stream takes at
    // least the three sleeps, and the tokens do not all arrive together.
    EXPECT_GE(r.e2e_ms, 170.0);
    EXPECT_GE(std::max(r.itl_ms[0], r.itl_ms[1]), 30.0);
    EXPECT_LE(r.ttft_ms, r.e2e_ms - 30.0);
  }
}

TEST(BenchServe, WithoutUsageTokensAreCountedFromChunks) {
  testing::BenchTestServer server;
  server.send_usage = false;
  LoadOptions o;
  o.url = server.url("/v1/completions");
  const auto work = items(10);
  const LoadResult res = run_load(o, work, nullptr);
  for (size_t i = 0; i < work.size(); ++i) {
    ASSERT_TRUE(res.records[i].ok) << res.records[i].error;
    EXPECT_EQ(res.records[i].output_tokens, work[i].output_len);
  }
}

TEST(BenchServe, ConcurrencyCapHoldsAndFailuresAreCounted) {
  testing::BenchTestServer server;
  server.fail_every = 5;
  server.token_delay_ms = 3;
  LoadOptions o;
  o.url = server.url("/v1/completions");
  o.max_concurrency = 3;
  const LoadResult res = run_load(o, items(30), nullptr);
  EXPECT_LE(server.max_in_flight.load(), 3);
  EXPECT_EQ(server.max_in_flight.load(), 3);
  const RunMetrics m = compute_run_metrics(res.records, res.duration_s, SloSpec{});
  EXPECT_EQ(m.num_requests, 30);
  EXPECT_EQ(m.failed, 6);
  EXPECT_EQ(m.completed, 24);
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors.begin()->first, "HTTP 500: boom");
}

TEST(BenchServe, ChatAndNonStreaming) {
  testing::BenchTestServer server;
  LoadOptions o;
  o.url = server.url("/v1/completions");
  o.api.stream = false;
  const auto work = items(6);
  LoadResult res = run_load(o, work, nullptr);
  for (size_t i = 0; i < work.size(); ++i) {
    ASSERT_TRUE(res.records[i].ok) << res.records[i].error;
    EXPECT_EQ(res.records[i].output_tokens, work[i].output_len);
    EXPECT_FALSE(res.records[i].has_first_token);  // no TTFT without streaming
  }
  o.api.kind = ApiKind::kChat;
  EXPECT_THROW(run_load(o, work, nullptr), Error);  // token ids cannot go to the chat API
  res = run_load(o, items(4, PromptKind::kText), nullptr);
  for (const auto& r : res.records) EXPECT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(server.bodies.back().contains("messages"));
}

TEST(BenchServe, UnreachableServerFailsEveryRequest) {
  int port;
  {
    testing::BenchTestServer probe;  // a port that was free a moment ago
    port = std::stoi(probe.url("").substr(17));
  }
  LoadOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(port) + "/v1/completions";
  const LoadResult res = run_load(o, items(3), nullptr);
  for (const auto& r : res.records) {
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error.rfind("connect:", 0), 0u) << r.error;
  }
}

}  // namespace
}  // namespace mixserve::bench
