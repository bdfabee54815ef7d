#include "engine/request.h"

#include <cmath>

#include "util/error.h"

namespace mixserve {

void SamplingParams::validate() const {
  if (max_tokens) MIXSERVE_CHECK(*max_tokens >= 1, "max_tokens must be >= 1, got ", *max_tokens);
  MIXSERVE_CHECK(min_tokens >= 0, "min_tokens must be >= 0, got ", min_tokens);
  if (max_tokens) {
    MIXSERVE_CHECK(min_tokens <= *max_tokens, "min_tokens must be <= max_tokens (", *max_tokens,
                   "), got ", min_tokens);
  }
  MIXSERVE_CHECK(std::isfinite(temperature) && temperature >= 0.0f,
                 "temperature must be >= 0, got ", temperature);
  MIXSERVE_CHECK(top_p > 0.0f && top_p <= 1.0f, "top_p must be in (0, 1], got ", top_p);
  MIXSERVE_CHECK(top_k == -1 || top_k >= 1, "top_k must be -1 (off) or >= 1, got ", top_k);
  MIXSERVE_CHECK(min_p >= 0.0f && min_p <= 1.0f, "min_p must be in [0, 1], got ", min_p);
  MIXSERVE_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f,
                 "repetition_penalty must be > 0, got ", repetition_penalty);
  MIXSERVE_CHECK(presence_penalty >= -2.0f && presence_penalty <= 2.0f,
                 "presence_penalty must be in [-2, 2], got ", presence_penalty);
  MIXSERVE_CHECK(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f,
                 "frequency_penalty must be in [-2, 2], got ", frequency_penalty);
  MIXSERVE_CHECK(n >= 1 && n <= kMaxN, "n must be in [1, ", kMaxN, "], got ", n);
  MIXSERVE_CHECK(logprobs >= -1 && logprobs <= kMaxLogprobs, "logprobs must be in [0, ",
                 kMaxLogprobs, "] (or -1 for none), got ", logprobs);
  MIXSERVE_CHECK(stop.size() <= kMaxStopStrings, "stop accepts at most ", kMaxStopStrings,
                 " strings, got ", stop.size());
  for (const std::string& s : stop) MIXSERVE_CHECK(!s.empty(), "stop strings must not be empty");
  for (int32_t id : stop_token_ids)
    MIXSERVE_CHECK(id >= 0, "stop_token_ids must be token ids >= 0, got ", id);
}

}  // namespace mixserve
