// Request and SamplingParams: what a client asks the engine for.
//
// Ranges follow the OpenAI API (and vLLM where OpenAI says nothing); validate() throws a
// mixserve::Error that names the parameter, the bound and the value given.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mixserve {

struct SamplingParams {
  // Output tokens at most; unset = up to the engine's max_model_len.
  std::optional<int32_t> max_tokens;
  int32_t min_tokens = 0;             // EOS / stop tokens / stop strings ignored before this
  float temperature = 1.0f;           // 0 = greedy (argmax, ties to the lowest id)
  float top_p = 1.0f;                 // (0, 1]
  int32_t top_k = -1;                 // -1 = off, else >= 1
  float min_p = 0.0f;                 // [0, 1]
  float repetition_penalty = 1.0f;    // > 0, 1 = off (HF/vLLM: over prompt + output tokens)
  float presence_penalty = 0.0f;      // [-2, 2] (OpenAI: over output tokens)
  float frequency_penalty = 0.0f;     // [-2, 2]
  std::optional<uint64_t> seed;       // same seed -> same output, whatever the batch
  int32_t n = 1;                      // samples per request, [1, kMaxN]
  bool ignore_eos = false;
  std::vector<std::string> stop;      // stop strings, matched on the text; not emitted
  std::vector<int32_t> stop_token_ids;
  int32_t logprobs = -1;              // -1 = none; 0 = chosen token only; K = also top K
  bool skip_special_tokens = true;

  static constexpr int32_t kMaxN = 128;
  static constexpr int32_t kMaxLogprobs = 20;  // OpenAI's top_logprobs bound
  static constexpr size_t kMaxStopStrings = 16;

  void validate() const;  // throws mixserve::Error naming the parameter
};

struct Request {
  std::string id;
  std::vector<int32_t> prompt_ids;
  SamplingParams params;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

}  // namespace mixserve
