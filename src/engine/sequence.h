// Sequence: one generation stream (one of a request's n samples) as the scheduler sees it.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/block_manager.h"

namespace mixserve {

struct Sequence {
  int64_t seq_id = 0;
  std::vector<int32_t> tokens;    // prompt, then generated tokens
  int32_t num_prompt_tokens = 0;
  int32_t max_tokens = 1;         // generated tokens at most (already resolved by the engine)
  int32_t num_computed = 0;       // tokens whose KV is in the cache (cached prefix included)
  BlockTable kv;
  int32_t num_cached_prompt_tokens = 0;  // prefix-cache hit at first admission (for usage)
  int32_t num_preemptions = 0;

  int32_t total_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_output_tokens() const { return total_tokens() - num_prompt_tokens; }
  // Tokens the sequence can ever hold: what the scheduler must be able to fit in the cache.
  int32_t max_total_tokens() const { return num_prompt_tokens + max_tokens; }
};

}  // namespace mixserve
