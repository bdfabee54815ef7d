// Benchmark workloads: N requests with input/output lengths drawn from a distribution, or read
// from a JSONL dataset. Prompts are random token ids (exact lengths, no tokenizer needed) or
// text made of random common words (about one token per word with Llama/Mistral tokenizers).
// Everything is seeded: the same spec gives the same requests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mixserve::bench {

// "128" (fixed), "normal:MEAN:STDDEV" or "uniform:MIN:MAX"; draws are rounded, at least 1.
struct LengthSpec {
  enum class Kind { kFixed, kNormal, kUniform };
  Kind kind = Kind::kFixed;
  double a = 0.0;  // fixed value, normal mean, or uniform min
  double b = 0.0;  // normal stddev or uniform max
  static LengthSpec parse(const std::string& text, const std::string& flag_name);
  std::string to_string() const;
};

enum class PromptKind { kTokens, kText };

struct WorkloadSpec {
  LengthSpec input{LengthSpec::Kind::kFixed, 128, 0};
  LengthSpec output{LengthSpec::Kind::kFixed, 128, 0};
  int64_t num_requests = 100;
  uint64_t seed = 0;
  PromptKind prompt_kind = PromptKind::kTokens;
  int32_t vocab_size = 32000;           // random ids are drawn from [0, vocab_size)
  std::vector<int32_t> avoid_ids;       // special ids never drawn (BOS, EOS, UNK, ...)
  std::filesystem::path dataset;        // JSONL; empty = synthetic prompts
};

struct WorkloadItem {
  std::vector<int32_t> prompt_ids;  // tokens prompts (and dataset lines given as ids)
  std::string prompt_text;          // text prompts
  int32_t input_len = 0;            // ids: exact; text: the intended token count (or words)
  int32_t output_len = 0;           // max_tokens, with ignore_eos: the exact output length
};

// Dataset lines: {"prompt": "text" | [ids], "prompt_token_ids": [ids], "output_len": N} where
// "max_tokens" may stand for "output_len"; lines without one take spec.output's draw. Lines are
// used in order and cycled when num_requests exceeds them. Blank lines are skipped.
std::vector<WorkloadItem> make_workload(const WorkloadSpec& spec);

// The items again with prompts that share no prefix with `items` (nor with another `run`):
// token prompts get another first id (>= 3, below vocab_size), text prompts a "[run N] " tag
// in front. Lengths and output lengths are unchanged, so runs of a sweep stay comparable.
std::vector<WorkloadItem> with_fresh_prefixes(const std::vector<WorkloadItem>& items, int run,
                                              int32_t vocab_size);

// The special ids of Llama/Mistral vocabularies (<unk>, <s>, </s>) plus the given ones.
std::vector<int32_t> default_avoid_ids(int32_t bos_id, const std::vector<int32_t>& eos_ids);

// The fixed word list text prompts are built from.
const std::vector<std::string>& prompt_words();

}  // namespace mixserve::bench
