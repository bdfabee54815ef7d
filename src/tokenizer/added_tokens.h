// Added tokens (tokenizer.json "added_tokens"): found in the text before the model sees it,
// leftmost-longest, as tokenizers' AddedVocabulary does. Tokens with normalized=false are
// matched in the raw text, the others in each normalized piece. lstrip / rstrip swallow the
// whitespace beside a match; single_word requires no word character on either side. Internal
// to src/tokenizer/.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mixserve::tokenizer_detail {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special = false, normalized = false, lstrip = false, rstrip = false, single_word = false;
};

// A split of some text: either plain text [begin, end) or an added token (id >= 0).
struct Segment {
  size_t begin, end;
  int32_t id;  // -1 for plain text
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }
  // Cuts `text` into plain and added-token segments, in order. Plain segments may be empty
  // only when no token matched (one segment covering the whole text).
  std::vector<Segment> split(std::string_view text) const;

 private:
  std::vector<AddedToken> tokens_;               // longest first
  std::vector<std::vector<uint32_t>> by_first_;  // first byte -> indices into tokens_
};

}  // namespace mixserve::tokenizer_detail
