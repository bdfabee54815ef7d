// The JSON bodies and server-sent-event chunks of OpenAI's completion and chat APIs.
//
// Streaming chunks of one response share its id; a chat choice's first delta carries
// role "assistant"; the finish chunk of a choice has an empty delta / text and its
// finish_reason; with include_usage every chunk has "usage": null and a last chunk has empty
// choices and the usage; then "data: [DONE]".
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/token_stream.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace mixserve::server {

// What one choice has produced so far.
struct ChoiceState {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprobs> logprobs;
  std::optional<std::string> finish_reason;
  int32_t text_offset = 0;  // completions logprobs: bytes of text before the next token
};

struct UsageTotals {
  int64_t prompt_tokens = 0;       // each prompt once, whatever n is
  int64_t completion_tokens = 0;   // over every choice
  int64_t cached_prompt_tokens = 0;
};

// The text a token contributes to the output: its vocabulary piece with SentencePiece's
// U+2581 as a space and <0xNN> byte tokens as that byte ("token_id:N" without a tokenizer).
std::string token_text(const Tokenizer* tokenizer, int32_t id);

class ResponseFormatter {
 public:
  ResponseFormatter(ApiKind kind, std::string id, int64_t created, std::string model,
                    const Tokenizer* tokenizer, bool logprobs, bool include_usage);

  const std::string& id() const { return id_; }

  // One SSE event ("data: {...}\n\n") with new output of choice `index`. For completions with
  // echo, `echo_ids` are prompt tokens listed (with null logprobs) before `logprobs`. `state`
  // supplies and advances the running text offset. role: chat's first delta. token_ids: the
  // chunk's new tokens, listed as "token_ids" when the model has no tokenizer (its text is
  // always empty, so the ids are the only way a streaming client sees tokens arrive).
  std::string chunk(int32_t index, std::string_view text, std::span<const TokenLogprobs> logprobs,
                    std::span<const int32_t> echo_ids, ChoiceState& state, bool role,
                    std::span<const int32_t> token_ids = {}) const;
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  // The finish chunk of choice `index`.
  std::string finish_chunk(int32_t index, const std::string& finish_reason) const;
  std::string usage_chunk(const UsageTotals& usage) const;
  static std::string done_event() { return "data: [DONE]\n\n"; }

  // The non-streaming body. echo_ids[i]: prompt ids echoed before choice i's logprobs.
  std::string full_response(std::vector<ChoiceState>& choices,
                            const std::vector<std::span<const int32_t>>& echo_ids,
                            const UsageTotals& usage) const;

 private:
  ApiKind kind_;
  std::string id_, model_;
  int64_t created_;
  const Tokenizer* tokenizer_;
  bool logprobs_;
  bool include_usage_;
};

// {"error": {"message", "type", "param", "code"}}
std::string error_json(const ApiError& error);
// An error inside a stream, as an SSE event.
std::string error_event(const ApiError& error);

// A JSON document as bytes, replacing invalid UTF-8 (never throws on text from the model).
std::string json_escape_string(std::string_view s);

}  // namespace mixserve::server
