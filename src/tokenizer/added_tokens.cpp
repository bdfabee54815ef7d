#include "tokenizer/added_tokens.h"

#include <algorithm>

namespace mixserve::tokenizer_detail {
namespace {

// ASCII whitespace; HF uses char::is_whitespace (documented difference for other spaces).
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_word_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
  tokens_.erase(std::remove_if(tokens_.begin(), tokens_.end(),
                               [](const AddedToken& t) { return t.content.empty(); }),
                tokens_.end());
  std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  by_first_.assign(256, {});
  for (size_t i = 0; i < tokens_.size(); ++i) {
    by_first_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(
        static_cast<uint32_t>(i));
  }
}

std::vector<Segment> AddedTokenMatcher::split(std::string_view text) const {
  if (tokens_.empty()) return {{0, text.size(), -1}};
  std::vector<Segment> out;
  size_t plain_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    const std::vector<uint32_t>& candidates = by_first_[static_cast<unsigned char>(text[pos])];
    const AddedToken* hit = nullptr;
    for (uint32_t idx : candidates) {
      const AddedToken& t = tokens_[idx];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        const size_t end = pos + t.content.size();
        if ((pos > 0 && is_word_char(text[pos - 1])) ||
            (end < text.size() && is_word_char(text[end]))) {
          continue;
        }
      }
      hit = &t;
      break;
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = pos, end = pos + hit->content.size();
    if (hit->lstrip) {
      while (begin > plain_begin && is_space(text[begin - 1])) --begin;
    }
    if (hit->rstrip) {
      while (end < text.size() && is_space(text[end])) ++end;
    }
    if (begin > plain_begin) out.push_back({plain_begin, begin, -1});
    out.push_back({begin, end, hit->id});
    plain_begin = pos = end;
  }
  if (plain_begin < text.size() || out.empty()) out.push_back({plain_begin, text.size(), -1});
  return out;
}

}  // namespace mixserve::tokenizer_detail
