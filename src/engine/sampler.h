// Sampler: picks the next token of one sequence from its logits row, on the CPU.
//
// Shapes: V = vocabulary size; logits is one row [V] of float32, log-softmax not applied.
// Order (as vLLM): penalties (repetition over prompt + output tokens, presence and frequency
// over output tokens), suppressed tokens (EOS / stop ids before min_tokens) set to -inf,
// then temperature 0 -> argmax (ties to the lowest id); otherwise divide by temperature,
// top-k, top-p, min-p, and draw. Log-probabilities are those of the raw model output (before
// penalties, temperature and truncation), vLLM's default.
//
// Randomness is counter based: the draw for output token i of sample j is a hash of
// (seed, j, i), so a seeded request reproduces whatever else is in the batch, and a
// preempted-and-recomputed sequence redraws the same tokens.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/request.h"
#include "engine/token_stream.h"

namespace mixserve {

struct SampleContext {
  std::span<const int32_t> prompt_ids;
  std::span<const int32_t> output_ids;     // generated so far
  std::span<const int32_t> suppressed_ids; // forced to -inf (EOS / stop ids before min_tokens)
  uint64_t seed = 0;
  int32_t sample_index = 0;
};

struct SampleResult {
  int32_t id = 0;
  TokenLogprobs logprobs;  // filled when params.logprobs >= 0
};

// Uniform double in [0, 1) for draw `step` of sample `sample_index` under `seed`.
double counter_uniform(uint64_t seed, int32_t sample_index, int64_t step);

// logits is modified in place (it is scratch for the caller).
SampleResult sample_token(std::span<float> logits, const SamplingParams& params,
                          const SampleContext& ctx);

// Raw log-softmax of `logits`: the chosen token's and the top `k` (most likely first,
// ties to the lowest id).
TokenLogprobs compute_logprobs(std::span<const float> logits, int32_t chosen, int32_t k);

}  // namespace mixserve
