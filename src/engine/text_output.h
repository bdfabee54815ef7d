// TextOutput: turns one sample's generated ids into final text, and finds stop strings.
//
// Detokenizing: each new id's text is the difference between decoding a short window of ids
// with and without it (the window starts a few prompt ids back, so SentencePiece's leading
// space comes out as decode() would give it). Text ending in U+FFFD is held until the next
// id completes the UTF-8 character. Only Tokenizer::decode is used, so any Tokenizer works.
//
// Stop strings: the text that could still be the beginning of a stop string is held back;
// when a stop string appears (possibly across several tokens), the text before it is emitted
// and the rest, the stop string included, is dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace mixserve {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds `delta`; returns the text that is now safe to emit. Sets *stopped when a stop string
  // completed (the returned text then ends right before it). With match == false (before
  // min_tokens) nothing is matched or held.
  std::string push(const std::string& delta, bool match, bool* stopped);
  std::string flush();  // the held text, when the sample ends for another reason

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

class TextOutput {
 public:
  TextOutput(std::shared_ptr<const Tokenizer> tokenizer, std::span<const int32_t> prompt_ids,
             bool skip_special_tokens, std::vector<std::string> stops);
  bool has_text() const { return tok_ != nullptr; }
  // Text of one more id (EOS and stop ids are not pushed). *stopped as StopStringMatcher.
  std::string push(int32_t id, bool match_stops, bool* stopped);
  std::string finish();  // everything still held

 private:
  std::string decode_range(size_t begin, size_t end) const;

  std::shared_ptr<const Tokenizer> tok_;
  bool skip_special_;
  StopStringMatcher stops_;
  std::vector<int32_t> ids_;  // context ids from the prompt, then generated ids
  size_t prefix_offset_ = 0;  // ids_[prefix_offset_, read_offset_) is already emitted text
  size_t read_offset_ = 0;
};

}  // namespace mixserve
