// Parsing and validating the bodies of POST /v1/completions and /v1/chat/completions.
//
// Every malformed body ends as an ApiError(400) naming the parameter: JSON syntax, invalid
// UTF-8, wrong types, out-of-range numbers (SamplingParams::validate's bounds), missing
// fields. Nothing here needs a model: prompts stay text or ids until the service tokenizes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/request.h"

namespace mixserve::server {

enum class ApiKind { kCompletion, kChat };

// One prompt of a completion request: text, or token ids.
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int32_t> ids;  // used when text is unset
};

struct ApiRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::optional<std::string> model;
  std::vector<PromptInput> prompts;  // completions: one or more
  std::string messages_json;         // chat: the messages, normalized (string or null content)
  bool add_generation_prompt = true; // chat extension (vLLM)
  SamplingParams params;             // params.logprobs: -1 none, 0 chosen only, K top-K
  bool stream = false;
  bool include_usage = false;        // stream_options.include_usage
  bool echo = false;                 // completions
  std::string user;
};

ApiRequest parse_completion_request(std::string_view body);
ApiRequest parse_chat_request(std::string_view body);

// Runs SamplingParams::validate and turns its mixserve::Error into an ApiError(400) whose
// param is the parameter the message names.
void validate_params(const SamplingParams& params);

// POST /tokenize and /detokenize (vLLM's shapes).
struct TokenizeRequest {
  std::optional<std::string> model;
  std::optional<std::string> prompt;  // set, or messages_json
  std::string messages_json;
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
};
TokenizeRequest parse_tokenize_request(std::string_view body);

struct DetokenizeRequest {
  std::optional<std::string> model;
  std::vector<int32_t> tokens;
};
DetokenizeRequest parse_detokenize_request(std::string_view body);

}  // namespace mixserve::server
