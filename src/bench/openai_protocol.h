// The OpenAI HTTP API as the load generator speaks it, without any networking: request bodies
// for /v1/completions and /v1/chat/completions, a Server-Sent-Events splitter, and what one
// response or stream chunk says (a token arrived, usage, an error).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/workload.h"

namespace mixserve::bench {

enum class ApiKind { kCompletions, kChat };

struct ApiRequestOptions {
  ApiKind kind = ApiKind::kCompletions;
  std::string model;           // the "model" field; servers with one model often ignore it
  bool stream = true;
  double temperature = 0.0;
  // Sends ignore_eos (a vLLM / mixserve extension) so output lengths are exactly max_tokens.
  bool ignore_eos = true;
};

// The JSON body for one workload item. Token-id prompts go as "prompt": [ids] (completions
// only: the chat API takes text); streaming asks for stream_options.include_usage.
std::string build_request_body(const WorkloadItem& item, const ApiRequestOptions& options);

// Splits an SSE byte stream into the data of its events ("data: ..." lines, joined by '\n';
// other fields and comments are dropped). Accepts \n, \r\n and \r line ends, any chunking.
class SseParser {
 public:
  // Appends bytes; returns the data of every event completed by them.
  std::vector<std::string> feed(std::string_view bytes);
  // Data of a last event not terminated by a blank line, if any.
  std::optional<std::string> finish();

 private:
  void end_line();
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
  std::vector<std::string> out_;
};

// What one JSON message (a stream chunk, or a whole non-streamed response) carries.
struct ApiMessage {
  bool done = false;                   // the "[DONE]" sentinel
  std::string error;                   // an {"error": ...} object, or unparsable JSON
  bool has_choice = false;             // choices[0] present
  std::string text;                    // choices[0].text / delta.content / message.content
  // choices[0].token_ids: the tokens of this chunk, sent by servers of models without a
  // tokenizer (mixserve on synthetic models; vLLM's return_token_ids), whose text is empty.
  size_t num_token_ids = 0;
  std::optional<std::string> finish_reason;
  std::optional<int64_t> prompt_tokens, completion_tokens;  // from "usage"
};
ApiMessage parse_api_message(std::string_view data, ApiKind kind);

}  // namespace mixserve::bench
