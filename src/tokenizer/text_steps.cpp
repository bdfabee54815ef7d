#include "tokenizer/text_steps.h"

namespace mixserve::tokenizer_detail {

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  size_t pos = text.find(from);
  if (pos == std::string::npos) return;
  std::string out;
  out.reserve(text.size() + text.size() / 4 * (to.size() > from.size() ? to.size() : 0));
  size_t start = 0;
  for (; pos != std::string::npos; pos = text.find(from, start)) {
    out.append(text, start, pos - start);
    out.append(to);
    start = pos + from.size();
  }
  out.append(text, start, std::string::npos);
  text = std::move(out);
}

void normalize(const std::vector<NormalizerStep>& steps, std::string& text) {
  for (const NormalizerStep& step : steps) {
    switch (step.kind) {
      case NormalizerStep::Kind::kPrepend:
        if (!text.empty()) text.insert(0, step.content);
        break;
      case NormalizerStep::Kind::kReplace:
        replace_all(text, step.pattern, step.content);
        break;
    }
  }
}

void PreTokenizer::apply(std::string& piece, bool at_text_start,
                         std::vector<std::pair<size_t, size_t>>& words) const {
  if (!metaspace) {
    if (!piece.empty()) words.emplace_back(0, piece.size());
    return;
  }
  replace_all(piece, " ", replacement);
  const bool prepend_here =
      prepend == Prepend::kAlways || (prepend == Prepend::kFirst && at_text_start);
  if (prepend_here && !piece.empty() && piece.compare(0, replacement.size(), replacement) != 0) {
    piece.insert(0, replacement);
  }
  if (piece.empty()) return;
  if (!split) {
    words.emplace_back(0, piece.size());
    return;
  }
  // MergedWithNext: each replacement character starts a new word.
  size_t begin = 0;
  for (size_t pos = piece.find(replacement, 1); pos != std::string::npos;
       pos = piece.find(replacement, pos + replacement.size())) {
    words.emplace_back(begin, pos);
    begin = pos;
  }
  words.emplace_back(begin, piece.size());
}

}  // namespace mixserve::tokenizer_detail
