// The OpenAI protocol pieces of the load generator: request bodies, SSE splitting under any
// chunking, and what a chunk or response says.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/http_load.h"
#include "bench/openai_protocol.h"
#include "util/error.h"

namespace mixserve::bench {
namespace {

TEST(BenchProtocol, CompletionBodyWithTokenIds) {
  WorkloadItem item;
  item.prompt_ids = {5, 6, 7};
  item.output_len = 9;
  ApiRequestOptions o;
  o.model = "m";
  const auto j = nlohmann::json::parse(build_request_body(item, o));
  EXPECT_EQ(j["prompt"], nlohmann::json({5, 6, 7}));
  EXPECT_EQ(j["max_tokens"], 9);
  EXPECT_EQ(j["ignore_eos"], true);
  EXPECT_EQ(j["stream"], true);
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["temperature"], 0.0);
}

TEST(BenchProtocol, ChatBodyAndNonStreaming) {
  WorkloadItem item;
  item.prompt_text = "hi there";
  item.output_len = 4;
  ApiRequestOptions o;
  o.kind = ApiKind::kChat;
  o.stream = false;
  const auto j = nlohmann::json::parse(build_request_body(item, o));
  EXPECT_EQ(j["messages"][0]["role"], "user");
  EXPECT_EQ(j["messages"][0]["content"], "hi there");
  EXPECT_FALSE(j.contains("prompt"));
  EXPECT_FALSE(j.contains("stream_options"));
  EXPECT_FALSE(j.contains("model"));
  EXPECT_EQ(j["stream"], false);
}

TEST(BenchProtocol, SseSplitsEventsUnderEveryChunking) {
  const std::string stream =
      "data: {\"a\":1}\n\n: comment\r\nevent: x\r\ndata: {\"b\":2}\r\n\r\ndata: line1\ndata: "
      "line2\n\ndata: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":2}", "line1\nline2", "[DONE]"};
  for (size_t cut1 = 0; cut1 <= stream.size(); ++cut1) {
    for (size_t cut2 = cut1; cut2 <= stream.size(); cut2 += 7) {
      SseParser p;
      std::vector<std::string> got;
      for (auto part : {stream.substr(0, cut1), stream.substr(cut1, cut2 - cut1),
                        stream.substr(cut2)})
        for (auto& e : p.feed(part)) got.push_back(e);
      ASSERT_EQ(got, want) << "cuts at " << cut1 << ", " << cut2;
      EXPECT_FALSE(p.finish().has_value());
    }
  }
  SseParser p;
  EXPECT_TRUE(p.feed("data: tail-without-blank-line").empty());
  EXPECT_EQ(p.finish(), std::optional<std::string>("tail-without-blank-line"));
}

TEST(BenchProtocol, ParsesChunksUsageAndErrors) {
  ApiMessage m = parse_api_message(
      R"({"choices":[{"index":0,"text":"ab","finish_reason":null}]})", ApiKind::kCompletions);
  EXPECT_TRUE(m.has_choice);
  EXPECT_EQ(m.text, "ab");
  EXPECT_FALSE(m.finish_reason.has_value());
  m = parse_api_message(R"({"choices":[{"delta":{"content":"x"},"finish_reason":"length"}]})",
                        ApiKind::kChat);
  EXPECT_EQ(m.text, "x");
  EXPECT_EQ(m.finish_reason, std::optional<std::string>("length"));
  m = parse_api_message(R"({"choices":[{"delta":{"role":"assistant"}}]})", ApiKind::kChat);
  EXPECT_TRUE(m.has_choice);
  EXPECT_TRUE(m.text.empty());  // a role-only delta carries no token
  EXPECT_EQ(m.num_token_ids, 0u);
  m = parse_api_message(R"({"choices":[{"index":0,"text":"","token_ids":[5,9,2]}]})",
                        ApiKind::kCompletions);  // a model without a tokenizer
  EXPECT_TRUE(m.text.empty());
  EXPECT_EQ(m.num_token_ids, 3u);
  m = parse_api_message(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34}})",
                        ApiKind::kCompletions);
  EXPECT_FALSE(m.has_choice);
  EXPECT_EQ(m.prompt_tokens, std::optional<int64_t>(12));
  EXPECT_EQ(m.completion_tokens, std::optional<int64_t>(34));
  m = parse_api_message(R"({"choices":[{"message":{"content":"full"}}]})", ApiKind::kChat);
  EXPECT_EQ(m.text, "full");
  EXPECT_TRUE(parse_api_message(" [DONE]", ApiKind::kChat).done);
  EXPECT_EQ(parse_api_message(R"({"error":{"message":"too long"}})", ApiKind::kChat).error,
            "too long");
  EXPECT_FALSE(parse_api_message("{oops", ApiKind::kChat).error.empty());
}

TEST(BenchProtocol, ParsesUrls) {
  HttpUrl u = parse_http_url("http://127.0.0.1:8000/v1/completions");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, "8000");
  EXPECT_EQ(u.target, "/v1/completions");
  u = parse_http_url("http://example.com");
  EXPECT_EQ(u.port, "80");
  EXPECT_EQ(u.target, "/");
  EXPECT_THROW(parse_http_url("https://x/v1"), Error);
  EXPECT_THROW(parse_http_url("localhost:8000"), Error);
  EXPECT_THROW(parse_http_url("http://h:80a/"), Error);
}

TEST(BenchProtocol, PoissonArrivals) {
  const auto t = poisson_arrivals(20000, 50.0, 3);
  ASSERT_EQ(t.size(), 20000u);
  EXPECT_EQ(t[0], 0.0);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_NEAR(t.back() / 19999.0, 1.0 / 50.0, 0.001);  // mean gap 1/rate
  EXPECT_EQ(poisson_arrivals(20000, 50.0, 3), t);
  for (double x : poisson_arrivals(5, INFINITY, 3)) EXPECT_EQ(x, 0.0);
  EXPECT_THROW(poisson_arrivals(5, 0.0, 1), Error);
}

}  // namespace
}  // namespace mixserve::bench
