// SSE chunks, JSON bodies, logprob objects, error shapes and HTTP framing, without sockets.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "engine_fakes.h"
#include "server/http_format.h"
#include "server/openai_response.h"

namespace mixserve::server {
namespace {

using json = nlohmann::json;

// "data: {...}\n\n" -> the JSON.
json event_json(const std::string& ev) {
  EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
  EXPECT_EQ(ev.substr(ev.size() - 2), "\n\n");
  return json::parse(ev.substr(6, ev.size() - 8));
}

TEST(OpenAiResponse, CompletionChunksShareTheIdAndEndWithFinish) {
  ResponseFormatter f(ApiKind::kCompletion, "cmpl-1", 123, "tiny", nullptr, false, true);
  ChoiceState st;
  const json c = event_json(f.chunk(2, "he", {}, {}, st, true));
  EXPECT_EQ(c["id"], "cmpl-1");
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["created"], 123);
  EXPECT_EQ(c["model"], "tiny");
  EXPECT_EQ(c["choices"][0]["index"], 2);
  EXPECT_EQ(c["choices"][0]["text"], "he");
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(c.contains("usage") && c["usage"].is_null());  // include_usage: null until last
  const json fin = event_json(f.finish_chunk(2, "length"));
  EXPECT_EQ(fin["id"], "cmpl-1");
  EXPECT_EQ(fin["choices"][0]["text"], "");
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
  const json u = event_json(f.usage_chunk({5, 7, 2}));
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(u["usage"]["completion_tokens"], 7);
  EXPECT_EQ(u["usage"]["total_tokens"], 12);
  EXPECT_EQ(u["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  EXPECT_EQ(ResponseFormatter::done_event(), "data: [DONE]\n\n");
}

TEST(OpenAiResponse, ChatFirstDeltaCarriesTheRole) {
  ResponseFormatter f(ApiKind::kChat, "chatcmpl-1", 1, "tiny", nullptr, false, false);
  ChoiceState st;
  const json first = event_json(f.chunk(0, "Hi", {}, {}, st, true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "Hi");
  EXPECT_FALSE(first.contains("usage"));
  const json next = event_json(f.chunk(0, " there", {}, {}, st, false));
  EXPECT_FALSE(next["choices"][0]["delta"].contains("role"));
  const json fin = event_json(f.finish_chunk(0, "stop"));
  EXPECT_TRUE(fin["choices"][0]["delta"].empty());
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "stop");
}

// A model without a tokenizer streams empty text: its chunks list the token ids instead, and
// only then (a model with a tokenizer never sends the field).
TEST(OpenAiResponse, ChunksOfModelsWithoutTokenizerCarryTokenIds) {
  ResponseFormatter f(ApiKind::kCompletion, "c", 1, "synthetic", nullptr, false, false);
  ChoiceState st;
  const std::vector<int32_t> ids = {17, 4};
  const json j = event_json(f.chunk(0, "", {}, {}, st, false, ids));
  EXPECT_EQ(j["choices"][0]["text"], "");
  EXPECT_EQ(j["choices"][0]["token_ids"], json::array({17, 4}));
  EXPECT_FALSE(event_json(f.chunk(0, "", {}, {}, st, false))["choices"][0].contains("token_ids"));
  testing::FakeTokenizer tok;
  ResponseFormatter g(ApiKind::kCompletion, "c", 1, "m", &tok, false, false);
  EXPECT_FALSE(event_json(g.chunk(0, "ab", {}, {}, st, false, ids))["choices"][0].contains(
      "token_ids"));
}

TEST(OpenAiResponse, LegacyLogprobsWithEchoAndOffsets) {
  testing::FakeTokenizer tok;  // id i > 0 is two letters
  ResponseFormatter f(ApiKind::kCompletion, "c", 1, "m", &tok, true, false);
  std::vector<ChoiceState> choices(1);
  choices[0].text = "PPabcd";
  choices[0].logprobs = {{1, -0.5f, {{1, -0.5f}, {2, -1.5f}}}, {2, -0.25f, {}}};
  choices[0].finish_reason = "length";
  const std::vector<int32_t> echo = {3};
  const json r = json::parse(f.full_response(choices, {echo}, {1, 2, 0}));
  const json& lp = r["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 3u);
  EXPECT_EQ(lp["tokens"][0], tok.decode(std::vector<int32_t>{3}, false));
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_DOUBLE_EQ(lp["token_logprobs"][1].get<double>(), -0.5);
  EXPECT_EQ(lp["top_logprobs"][1].size(), 2u);
  EXPECT_DOUBLE_EQ(lp["top_logprobs"][1][std::string(tok.id_to_piece(2))].get<double>(), -1.5);
  EXPECT_EQ(lp["text_offset"], json::array({0, 2, 4}));
  EXPECT_EQ(r["usage"]["total_tokens"], 3);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
}

TEST(OpenAiResponse, ChatLogprobsHaveBytesAndFiniteValues) {
  testing::FakeTokenizer tok;
  ResponseFormatter f(ApiKind::kChat, "c", 1, "m", &tok, true, false);
  ChoiceState st;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  std::vector<TokenLogprobs> lps = {{5, -0.1f, {{5, -0.1f}, {6, neg_inf}}}};
  const json c = event_json(f.chunk(0, "x", lps, {}, st, true));
  const json& e = c["choices"][0]["logprobs"]["content"][0];
  const std::string t(tok.id_to_piece(5));
  EXPECT_EQ(e["token"], t);
  EXPECT_EQ(e["bytes"], json::array({int(uint8_t(t[0])), int(uint8_t(t[1]))}));
  EXPECT_EQ(e["top_logprobs"].size(), 2u);
  EXPECT_DOUBLE_EQ(e["top_logprobs"][1]["logprob"].get<double>(), -9999.0);  // not null/-inf
}

TEST(OpenAiResponse, TokenTextMapsSentencePieceSpaceAndByteTokens) {
  class Pieces : public testing::FakeTokenizer {
   public:
    std::string_view id_to_piece(int32_t id) const override {
      return id == 1 ? "\xE2\x96\x81the" : id == 2 ? "<0x0A>" : "<s>";
    }
    bool is_special(int32_t id) const override { return id == 3; }
  } tok;
  EXPECT_EQ(token_text(&tok, 1), " the");
  EXPECT_EQ(token_text(&tok, 2), "\n");
  EXPECT_EQ(token_text(&tok, 3), "<s>");
  EXPECT_EQ(token_text(nullptr, 7), "token_id:7");
  EXPECT_EQ(token_text(&tok, 100000), "token_id:100000");
}

TEST(OpenAiResponse, InvalidUtf8FromTheModelIsReplacedNotThrown) {
  ResponseFormatter f(ApiKind::kCompletion, "c", 1, "m", nullptr, false, false);
  ChoiceState st;
  const std::string ev = f.chunk(0, "a\xff", {}, {}, st, true);
  EXPECT_EQ(event_json(ev)["choices"][0]["text"], "a\xEF\xBF\xBD");
}

TEST(OpenAiResponse, ErrorShape) {
  const json e = json::parse(error_json(ApiError(400, "top_p must be in (0, 1]", "top_p")));
  EXPECT_EQ(e["error"]["message"], "top_p must be in (0, 1]");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "top_p");
  EXPECT_EQ(e["error"]["code"], 400);
  const json a = json::parse(error_json(ApiError(401, "no key", "", "", "invalid_api_key")));
  EXPECT_EQ(a["error"]["type"], "authentication_error");
  EXPECT_TRUE(a["error"]["param"].is_null());
  EXPECT_EQ(a["error"]["code"], "invalid_api_key");
  EXPECT_EQ(ApiError(429, "x").type(), "rate_limit_error");
  EXPECT_EQ(ApiError(404, "x").type(), "not_found_error");
  EXPECT_EQ(ApiError(503, "x").type(), "service_unavailable_error");
  EXPECT_EQ(error_event(ApiError(500, "x")).rfind("data: {\"error\"", 0), 0u);
}

TEST(HttpFormat, ResponsesAndChunks) {
  const std::string r = format_http_response(429, "application/json", {{"Retry-After", "1"}},
                                             "{}", false);
  EXPECT_EQ(r.rfind("HTTP/1.1 429 Too Many Requests\r\n", 0), 0u);
  EXPECT_NE(r.find("\r\nContent-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_NE(r.find("\r\nRetry-After: 1\r\n"), std::string::npos);
  EXPECT_EQ(r.substr(r.size() - 6), "\r\n\r\n{}");
  const std::string head = format_http_response(200, "text/plain", {}, "abc", true, true);
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");  // HEAD: no body, same length
  EXPECT_NE(head.find("Content-Length: 3"), std::string::npos);
  EXPECT_NE(event_stream_head(true).find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_EQ(http_chunk(std::string(26, 'x')), "1a\r\n" + std::string(26, 'x') + "\r\n");
  EXPECT_EQ(http_chunk(""), "");
  EXPECT_EQ(kLastChunk, "0\r\n\r\n");
  EXPECT_EQ(status_reason(413), "Payload Too Large");
}

}  // namespace
}  // namespace mixserve::server
