// Parsing and validation of completion, chat, tokenize and detokenize bodies: every error
// path is a 400 ApiError naming the parameter; valid bodies fill SamplingParams.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "server/api_error.h"
#include "server/openai_request.h"

namespace mixserve::server {
namespace {

// The param of the ApiError that parsing `body` throws ("<none>" if it does not throw).
std::string error_param(const std::string& body, bool chat = false) {
  try {
    if (chat) {
      parse_chat_request(body);
    } else {
      parse_completion_request(body);
    }
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), 400) << body;
    EXPECT_EQ(e.type(), "invalid_request_error");
    return e.param();
  }
  return "<none>";
}

TEST(OpenAiRequest, CompletionFieldsFillSamplingParams) {
  const ApiRequest r = parse_completion_request(R"({
    "model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "n": 2,
    "stop": "x", "seed": -3, "presence_penalty": 1, "frequency_penalty": -1, "logprobs": 3,
    "echo": true, "user": "u", "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.2,
    "ignore_eos": true, "min_tokens": 2, "stream": true,
    "stream_options": {"include_usage": true}, "unknown_field": [1, 2]})");
  EXPECT_EQ(r.kind, ApiKind::kCompletion);
  EXPECT_EQ(*r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(*r.prompts[0].text, "hi");
  EXPECT_EQ(*r.params.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.params.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.params.top_p, 0.9f);
  EXPECT_EQ(r.params.n, 2);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(*r.params.seed, uint64_t(int64_t(-3)));
  EXPECT_FLOAT_EQ(r.params.presence_penalty, 1.0f);
  EXPECT_FLOAT_EQ(r.params.frequency_penalty, -1.0f);
  EXPECT_EQ(r.params.logprobs, 3);
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.user, "u");
  EXPECT_EQ(r.params.top_k, 5);
  EXPECT_FLOAT_EQ(r.params.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.params.repetition_penalty, 1.2f);
  EXPECT_TRUE(r.params.ignore_eos);
  EXPECT_EQ(r.params.min_tokens, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(OpenAiRequest, DefaultsAndNulls) {
  const ApiRequest r = parse_completion_request(
      R"({"prompt": "hi", "max_tokens": null, "stop": null, "logprobs": null, "seed": null})");
  EXPECT_FALSE(r.params.max_tokens.has_value());  // the engine uses the remaining context
  EXPECT_FALSE(r.params.seed.has_value());
  EXPECT_EQ(r.params.logprobs, -1);
  EXPECT_EQ(r.params.n, 1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.model.has_value());
}

TEST(OpenAiRequest, PromptForms) {
  auto ids = parse_completion_request(R"({"prompt": [1, 2, 3]})").prompts;
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_FALSE(ids[0].text);
  EXPECT_EQ(ids[0].ids, (std::vector<int32_t>{1, 2, 3}));
  auto many = parse_completion_request(R"({"prompt": ["a", "b"]})").prompts;
  ASSERT_EQ(many.size(), 2u);
  EXPECT_EQ(*many[1].text, "b");
  auto nested = parse_completion_request(R"({"prompt": [[1], [2, 3]]})").prompts;
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested[1].ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(parse_completion_request(R"({"prompt": "x", "max_tokens": 4.0})")
                .params.max_tokens.value(),
            4);  // integral floats are integers
}

TEST(OpenAiRequest, EveryMalformedCompletionNamesItsParameter) {
  EXPECT_EQ(error_param(""), "");
  EXPECT_EQ(error_param("{"), "");
  EXPECT_EQ(error_param("[1]"), "");
  EXPECT_EQ(error_param("\"x\""), "");
  EXPECT_EQ(error_param("{\"prompt\": \"\xff\"}"), "");  // invalid UTF-8
  EXPECT_EQ(error_param(R"({})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": 5})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": []})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": [[]]})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": [1, "a"]})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": ["a", 1]})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": [-1]})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": [1.5]})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": [99999999999]})"), "prompt");
  EXPECT_EQ(error_param(R"({"prompt": "x", "model": 1})"), "model");
  EXPECT_EQ(error_param(R"({"prompt": "x", "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "max_tokens": 1.5})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "max_tokens": "3"})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "max_tokens": true})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "max_tokens": 1e300})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "max_tokens": 18446744073709551615})"), "max_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "temperature": -0.5})"), "temperature");
  EXPECT_EQ(error_param(R"({"prompt": "x", "temperature": 1e999})"), "");  // not a JSON double
  EXPECT_EQ(error_param(R"({"prompt": "x", "temperature": 1e35})"), "temperature");  // not a float
  EXPECT_EQ(error_param(R"({"prompt": "x", "temperature": "hot"})"), "temperature");
  EXPECT_EQ(error_param(R"({"prompt": "x", "top_p": 0})"), "top_p");
  EXPECT_EQ(error_param(R"({"prompt": "x", "top_p": 1.5})"), "top_p");
  EXPECT_EQ(error_param(R"({"prompt": "x", "n": 0})"), "n");
  EXPECT_EQ(error_param(R"({"prompt": "x", "n": 129})"), "n");
  EXPECT_EQ(error_param(R"({"prompt": "x", "stop": 3})"), "stop");
  EXPECT_EQ(error_param(R"({"prompt": "x", "stop": ["a", 3]})"), "stop");
  EXPECT_EQ(error_param(R"({"prompt": "x", "stop": [""]})"), "stop");
  EXPECT_EQ(error_param(R"({"prompt": "x", "seed": "1"})"), "seed");
  EXPECT_EQ(error_param(R"({"prompt": "x", "presence_penalty": 3})"), "presence_penalty");
  EXPECT_EQ(error_param(R"({"prompt": "x", "frequency_penalty": -3})"), "frequency_penalty");
  EXPECT_EQ(error_param(R"({"prompt": "x", "logprobs": 21})"), "logprobs");
  EXPECT_EQ(error_param(R"({"prompt": "x", "logprobs": true})"), "logprobs");
  EXPECT_EQ(error_param(R"({"prompt": "x", "echo": 1})"), "echo");
  EXPECT_EQ(error_param(R"({"prompt": "x", "user": 1})"), "user");
  EXPECT_EQ(error_param(R"({"prompt": "x", "top_k": 0})"), "top_k");
  EXPECT_EQ(error_param(R"({"prompt": "x", "top_k": -2})"), "top_k");
  EXPECT_EQ(error_param(R"({"prompt": "x", "min_p": 2})"), "min_p");
  EXPECT_EQ(error_param(R"({"prompt": "x", "repetition_penalty": 0})"), "repetition_penalty");
  EXPECT_EQ(error_param(R"({"prompt": "x", "ignore_eos": "no"})"), "ignore_eos");
  EXPECT_EQ(error_param(R"({"prompt": "x", "min_tokens": -1})"), "min_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "min_tokens": 5, "max_tokens": 2})"), "min_tokens");
  EXPECT_EQ(error_param(R"({"prompt": "x", "stream": 1})"), "stream");
  EXPECT_EQ(error_param(R"({"prompt": "x", "stream_options": {"include_usage": true}})"),
            "stream_options");
  EXPECT_EQ(error_param(R"({"prompt": "x", "stream": true, "stream_options": 1})"),
            "stream_options");
  EXPECT_EQ(error_param(R"({"prompt": "x", "stop_token_ids": 1})"), "stop_token_ids");
}

TEST(OpenAiRequest, ChatMessagesAndLogprobs) {
  const ApiRequest r = parse_chat_request(R"({
    "messages": [{"role": "system", "content": "be brief"},
                 {"role": "user", "content": [{"type": "text", "text": "a"},
                                              {"type": "text", "text": "b"}]},
                 {"role": "assistant", "content": null, "name": "bot"}],
    "max_tokens": 3, "max_completion_tokens": 5, "logprobs": true, "top_logprobs": 4})");
  EXPECT_EQ(r.kind, ApiKind::kChat);
  const auto m = nlohmann::json::parse(r.messages_json);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[1]["content"], "a\nb");
  EXPECT_TRUE(m[2]["content"].is_null());
  EXPECT_EQ(m[2]["name"], "bot");
  EXPECT_EQ(*r.params.max_tokens, 5);  // max_completion_tokens wins
  EXPECT_EQ(r.params.logprobs, 4);
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}],
                                   "logprobs": true})").params.logprobs, 0);
  EXPECT_EQ(parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}]})")
                .params.logprobs, -1);
}

TEST(OpenAiRequest, EveryMalformedChatNamesItsParameter) {
  EXPECT_EQ(error_param(R"({})", true), "messages");
  EXPECT_EQ(error_param(R"({"messages": []})", true), "messages");
  EXPECT_EQ(error_param(R"({"messages": "hi"})", true), "messages");
  EXPECT_EQ(error_param(R"({"messages": [1]})", true), "messages[0]");
  EXPECT_EQ(error_param(R"({"messages": [{"content": "x"}]})", true), "messages[0].role");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": 1}]})", true),
            "messages[0].content");
  EXPECT_EQ(error_param(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
                        true),
            "messages[0].content");
  const std::string ok = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_EQ(error_param("{" + ok + R"(, "top_logprobs": 2})", true), "top_logprobs");
  EXPECT_EQ(error_param("{" + ok + R"(, "logprobs": true, "top_logprobs": 21})", true),
            "top_logprobs");
  EXPECT_EQ(error_param("{" + ok + R"(, "logprobs": 1})", true), "logprobs");
  EXPECT_EQ(error_param("{" + ok + R"(, "max_completion_tokens": 0})", true),
            "max_completion_tokens");
}

TEST(OpenAiRequest, TokenizeAndDetokenize) {
  const TokenizeRequest t = parse_tokenize_request(R"({"prompt": "hi", "add_special_tokens": false})");
  EXPECT_EQ(*t.prompt, "hi");
  EXPECT_FALSE(t.add_special_tokens);
  const TokenizeRequest c = parse_tokenize_request(R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_FALSE(c.prompt);
  EXPECT_FALSE(c.add_special_tokens);
  EXPECT_THROW(parse_tokenize_request(R"({})"), ApiError);
  EXPECT_THROW(parse_tokenize_request(R"({"prompt": 1})"), ApiError);
  EXPECT_EQ(parse_detokenize_request(R"({"tokens": [1, 2]})").tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_THROW(parse_detokenize_request(R"({"tokens": "1"})"), ApiError);
  EXPECT_THROW(parse_detokenize_request(R"({"tokens": [-1]})"), ApiError);
}

}  // namespace
}  // namespace mixserve::server
