// The text-side steps of a tokenizer.json before the model: normalizers and the pre-tokenizer.
// Only the steps the Llama / Mistral BPE family uses are supported; the loader names any other
// step in its error. Internal to src/tokenizer/.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mixserve::tokenizer_detail {

// "normalizer": null, Prepend, Replace (String pattern) or a Sequence of those, flattened.
struct NormalizerStep {
  enum class Kind { kPrepend, kReplace };
  Kind kind;
  std::string pattern;  // kReplace: the literal to find
  std::string content;  // kPrepend: the prefix; kReplace: the replacement
};

// Applies the steps in order. Prepend leaves an empty string empty, as HF's does.
void normalize(const std::vector<NormalizerStep>& steps, std::string& text);

// Replaces every occurrence of `from` (non-empty) with `to`, left to right.
void replace_all(std::string& text, std::string_view from, std::string_view to);

// "pre_tokenizer": null or Metaspace.
struct PreTokenizer {
  enum class Prepend { kAlways, kFirst, kNever };
  bool metaspace = false;                    // false: the whole piece is one word
  std::string replacement = "\xE2\x96\x81";  // U+2581
  Prepend prepend = Prepend::kAlways;
  bool split = true;

  // Rewrites `piece` in place (spaces -> replacement, optional prefix) and appends the word
  // boundaries as [begin, end) byte ranges into it. `at_text_start`: the piece begins at
  // offset 0 of the original text (what prepend_scheme "first" tests).
  void apply(std::string& piece, bool at_text_start,
             std::vector<std::pair<size_t, size_t>>& words) const;
};

}  // namespace mixserve::tokenizer_detail
