// tokenizer.json "decoder": a chain of steps over the list of token strings, as tokenizers'
// decode_chain runs them: Replace, ByteFallback, Fuse, Strip, Metaspace (a Sequence is
// flattened by the loader). The result is the concatenation of the final list. Internal to
// src/tokenizer/.
#pragma once

#include <string>
#include <vector>

namespace mixserve::tokenizer_detail {

struct DecoderStep {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind;
  std::string pattern;         // kReplace: literal to find; kMetaspace: the replacement character
  std::string content;         // kReplace: replacement; kStrip: the one character to strip
  size_t start = 0, stop = 0;  // kStrip: how many leading / trailing characters at most
  bool strip_first = true;     // kMetaspace: drop the replacement in the first token
};

// Runs the chain on `tokens` (consumed) and returns the joined text.
std::string run_decoder(const std::vector<DecoderStep>& steps, std::vector<std::string> tokens);

// The byte of a "<0xXX>" piece, or -1 (exactly HF's test: 6 characters, hex digits 3..4).
int byte_fallback_value(std::string_view piece);

// True when `bytes` is valid UTF-8 by Rust's rules (no overlongs, surrogates or > U+10FFFF).
bool valid_utf8(std::string_view bytes);

}  // namespace mixserve::tokenizer_detail
