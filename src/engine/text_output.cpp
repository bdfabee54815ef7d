#include "engine/text_output.h"

#include <algorithm>

namespace mixserve {

namespace {
constexpr size_t kPromptContextIds = 5;

bool ends_with_replacement_char(const std::string& s) {
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}
}  // namespace

std::string StopStringMatcher::push(const std::string& delta, bool match, bool* stopped) {
  *stopped = false;
  held_ += delta;
  if (stops_.empty() || !match) return flush();
  // Earliest stop string occurrence in the held text (none can start in emitted text: any
  // such start would have been held back).
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > hold; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopStringMatcher::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

TextOutput::TextOutput(std::shared_ptr<const Tokenizer> tokenizer,
                       std::span<const int32_t> prompt_ids, bool skip_special_tokens,
                       std::vector<std::string> stops)
    : tok_(std::move(tokenizer)), skip_special_(skip_special_tokens), stops_(std::move(stops)) {
  const size_t ctx = std::min(prompt_ids.size(), kPromptContextIds);
  ids_.assign(prompt_ids.end() - ctx, prompt_ids.end());
  read_offset_ = ids_.size();
}

std::string TextOutput::decode_range(size_t begin, size_t end) const {
  return tok_->decode(std::span<const int32_t>(ids_).subspan(begin, end - begin), skip_special_);
}

std::string TextOutput::push(int32_t id, bool match_stops, bool* stopped) {
  *stopped = false;
  if (!tok_) return "";
  ids_.push_back(id);
  const std::string before = decode_range(prefix_offset_, read_offset_);
  const std::string now = decode_range(prefix_offset_, ids_.size());
  if (now.size() <= before.size() || ends_with_replacement_char(now)) return "";
  std::string delta = now.substr(before.size());
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return stops_.push(delta, match_stops, stopped);
}

std::string TextOutput::finish() {
  if (!tok_) return "";
  const std::string before = decode_range(prefix_offset_, read_offset_);
  const std::string now = decode_range(prefix_offset_, ids_.size());
  std::string out = stops_.flush();
  if (now.size() > before.size()) out += now.substr(before.size());
  return out;
}

}  // namespace mixserve
