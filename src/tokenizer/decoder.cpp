#include "tokenizer/decoder.h"

#include "tokenizer/bpe_model.h"
#include "tokenizer/text_steps.h"

namespace mixserve::tokenizer_detail {
namespace {

constexpr const char* kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A run of byte tokens becomes its UTF-8 text when valid, else one U+FFFD per byte.
void flush_bytes(std::string& bytes, std::vector<std::string>& out) {
  if (bytes.empty()) return;
  if (valid_utf8(bytes)) {
    out.push_back(bytes);
  } else {
    for (size_t i = 0; i < bytes.size(); ++i) out.emplace_back(kReplacementChar);
  }
  bytes.clear();
}

void byte_fallback(std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  out.reserve(tokens.size());
  std::string bytes;
  for (std::string& t : tokens) {
    if (const int b = byte_fallback_value(t); b >= 0) {
      bytes.push_back(static_cast<char>(b));
      continue;
    }
    flush_bytes(bytes, out);
    out.push_back(std::move(t));
  }
  flush_bytes(bytes, out);
  tokens = std::move(out);
}

void strip(std::string& token, std::string_view ch, size_t start, size_t stop) {
  size_t begin = 0;
  for (size_t i = 0; i < start && token.compare(begin, ch.size(), ch) == 0; ++i) {
    begin += ch.size();
  }
  size_t end = token.size();
  for (size_t i = 0;
       i < stop && end >= begin + ch.size() && token.compare(end - ch.size(), ch.size(), ch) == 0;
       ++i) {
    end -= ch.size();
  }
  token = token.substr(begin, end - begin);
}

}  // namespace

int byte_fallback_value(std::string_view piece) {
  if (piece.size() != 6 || piece[0] != '<' || piece[1] != '0' || piece[2] != 'x' ||
      piece[5] != '>') {
    return -1;
  }
  const int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

bool valid_utf8(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    uint32_t cp;
    const size_t len = next_utf8_char(bytes, i, cp);
    if (cp == 0xFFFFFFFFu) return false;
    i += len;
  }
  return true;
}

std::string run_decoder(const std::vector<DecoderStep>& steps, std::vector<std::string> tokens) {
  for (const DecoderStep& step : steps) {
    switch (step.kind) {
      case DecoderStep::Kind::kReplace:
        for (std::string& t : tokens) replace_all(t, step.pattern, step.content);
        break;
      case DecoderStep::Kind::kByteFallback:
        byte_fallback(tokens);
        break;
      case DecoderStep::Kind::kFuse: {
        size_t total = 0;
        for (const std::string& t : tokens) total += t.size();
        std::string fused;
        fused.reserve(total);
        for (const std::string& t : tokens) fused += t;
        tokens.assign(1, std::move(fused));
        break;
      }
      case DecoderStep::Kind::kStrip:
        for (std::string& t : tokens) strip(t, step.content, step.start, step.stop);
        break;
      case DecoderStep::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(tokens[i], step.pattern, i == 0 && step.strip_first ? "" : " ");
        }
        break;
    }
  }
  std::string text;
  for (const std::string& t : tokens) text += t;
  return text;
}

}  // namespace mixserve::tokenizer_detail
