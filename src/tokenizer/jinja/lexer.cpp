#include "tokenizer/jinja/lexer.h"

#include <array>
#include <utility>

#include "tokenizer/jinja/js_text.h"
#include "util/error.h"

namespace mixserve::jinja {

const char* tok_name(Tok t) {
  static constexpr std::array<const char*, 25> kNames = {
      "Text", "NumericLiteral", "StringLiteral", "Identifier", "Equals", "OpenParen",
      "CloseParen", "OpenStatement", "CloseStatement", "OpenExpression", "CloseExpression",
      "OpenSquareBracket", "CloseSquareBracket", "OpenCurlyBracket", "CloseCurlyBracket",
      "Comma", "Dot", "Colon", "Pipe", "AdditiveBinaryOperator", "MultiplicativeBinaryOperator",
      "ExponentiationBinaryOperator", "ComparisonBinaryOperator", "UnaryOperator", "Comment"};
  return kNames[static_cast<size_t>(t)];
}

std::string describe_position(std::string_view source, uint32_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

namespace {

// Text after preprocessing, with the original offset of every byte.
struct Mapped {
  std::string text;
  std::vector<uint32_t> origin;
  void push(char c, uint32_t o) {
    text += c;
    origin.push_back(o);
  }
};

// s.compare(i, ..) == 0 without throwing when i is past the end.
bool starts_at(const std::string& s, size_t i, std::string_view lit) {
  return i <= s.size() && s.size() - i >= lit.size() && s.compare(i, lit.size(), lit) == 0;
}

bool is_space_at(const std::string& s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *len = 1;
    return is_js_space(c);
  }
  size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) n = 1;
  const auto cps = utf8_decode(std::string_view(s).substr(i, n));
  *len = n;
  return cps.size() == 1 && is_js_space(cps[0]);
}

// A JavaScript line terminator (for the /m flag): \n, \r, U+2028, U+2029.
size_t line_terminator_len(const std::string& s, size_t i) {
  if (s[i] == '\n' || s[i] == '\r') return 1;
  if (starts_at(s, i, "\xE2\x80\xA8") || starts_at(s, i, "\xE2\x80\xA9")) return 3;
  return 0;
}

// template.replace(/^[ \t]*({[#%-])/gm, "$1")
Mapped lstrip_blocks(const Mapped& in) {
  Mapped out;
  const std::string& s = in.text;
  bool line_start = true;
  size_t i = 0;
  while (i < s.size()) {
    if (line_start) {
      size_t j = i;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) ++j;
      if (j + 1 < s.size() && s[j] == '{' && (s[j + 1] == '#' || s[j + 1] == '%' ||
                                              s[j + 1] == '-')) {
        i = j;  // drop the indentation
      }
    }
    const size_t lt = line_terminator_len(s, i);
    const size_t n = lt ? lt : 1;
    for (size_t k = 0; k < n; ++k) out.push(s[i + k], in.origin[i + k]);
    line_start = lt != 0;
    i += n;
  }
  return out;
}

// template.replace(/([#%-]})\n/g, "$1")
Mapped trim_blocks(const Mapped& in) {
  Mapped out;
  const std::string& s = in.text;
  for (size_t i = 0; i < s.size(); ++i) {
    out.push(s[i], in.origin[i]);
    if (i + 2 < s.size() && (s[i] == '#' || s[i] == '%' || s[i] == '-') && s[i + 1] == '}' &&
        s[i + 2] == '\n') {
      out.push(s[i + 1], in.origin[i + 1]);
      i += 2;  // skip "}" (pushed) and the newline
    }
  }
  return out;
}

// replace(/(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs, ...): drops {% generation %}
// markers, and the whitespace around them on the sides marked with '-'.
Mapped strip_generation_tags(const Mapped& in) {
  Mapped out;
  const std::string& s = in.text;
  auto skip_space = [&](size_t i) {
    size_t len;
    while (i < s.size() && is_space_at(s, i, &len)) i += len;
    return i;
  };
  size_t i = 0;
  while (i < s.size()) {
    // Try a match starting at i: whitespace run, then the tag.
    const size_t ws_end = skip_space(i);
    size_t j = ws_end;
    bool matched = false;
    bool lstrip = false, rstrip = false;
    size_t tag_end = 0;
    if (starts_at(s, j, "{%")) {
      j += 2;
      if (j < s.size() && s[j] == '-') lstrip = true, ++j;
      j = skip_space(j);
      if (starts_at(s, j, "end") && starts_at(s, j + 3, "generation")) j += 3;
      if (starts_at(s, j, "generation")) {
        j = skip_space(j + 10);
        if (j < s.size() && s[j] == '-') rstrip = true, ++j;
        if (starts_at(s, j, "%}")) {
          matched = true;
          tag_end = j + 2;
        }
      }
    }
    if (!matched) {
      size_t len = 1;
      if (ws_end > i) len = ws_end - i;  // the run cannot start a match later: copy it whole
      for (size_t k = 0; k < len; ++k) out.push(s[i + k], in.origin[i + k]);
      i += len;
      continue;
    }
    const size_t after_end = skip_space(tag_end);
    if (!lstrip) for (size_t k = i; k < ws_end; ++k) out.push(s[k], in.origin[k]);
    if (!rstrip) for (size_t k = tag_end; k < after_end; ++k) out.push(s[k], in.origin[k]);
    i = after_end;
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string_view original, Mapped src) : original_(original), m_(std::move(src)),
                                                  s_(m_.text) {}

  std::vector<Token> run();

 private:
  [[noreturn]] void fail(size_t at, const std::string& what) const {
    const uint32_t o = at < m_.origin.size() ? m_.origin[at]
                                             : static_cast<uint32_t>(original_.size());
    throw_error("chat template syntax error at ", describe_position(original_, o), ": ", what);
  }
  uint32_t origin(size_t at) const {
    return at < m_.origin.size() ? m_.origin[at] : static_cast<uint32_t>(original_.size());
  }
  void push(Tok t, std::string v, size_t at) { tokens_.push_back({t, std::move(v), origin(at)}); }
  char at(size_t i) const { return i < s_.size() ? s_[i] : '\0'; }
  bool space_at(size_t i, size_t* len) const { return i < s_.size() && is_space_at(s_, i, len); }
  void skip_space() {
    size_t len;
    while (space_at(pos_, &len)) pos_ += len;
  }
  void strip_trailing_whitespace() {
    if (!tokens_.empty() && tokens_.back().type == Tok::kText) {
      tokens_.back().value = js_trim(tokens_.back().value, false, true);
      if (tokens_.back().value.empty()) tokens_.pop_back();
    }
  }
  std::string read_string(char quote, size_t start);
  std::string read_digits() {
    std::string out;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') out += s_[pos_++];
    if (pos_ >= s_.size() && !out.empty()) fail(pos_, "unexpected end of input");
    return out;
  }

  std::string_view original_;
  Mapped m_;
  const std::string& s_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Lexer::read_string(char quote, size_t start) {
  std::string out;
  char16_t pending_high = 0;  // a \uD8xx escape waiting for its low half
  auto flush_high = [&] {
    if (pending_high) utf8_append(out, 0xFFFD);
    pending_high = 0;
  };
  while (true) {
    if (pos_ >= s_.size()) fail(start, "unterminated string literal");
    const char c = s_[pos_];
    if (c == quote) break;
    if (c == '\\') {
      ++pos_;
      if (pos_ >= s_.size()) fail(pos_, "unexpected end of input in a string escape");
      const char e = s_[pos_++];
      if (e == 'x' || e == 'u') {
        const int len = e == 'x' ? 2 : 4;
        unsigned v = 0;
        for (int k = 0; k < len; ++k) {
          const int h = hex_value(at(pos_ + k));
          if (h < 0) fail(pos_ - 2, std::string("invalid hexadecimal escape \\") + e);
          v = v * 16 + static_cast<unsigned>(h);
        }
        pos_ += len;
        if (v >= 0xDC00 && v <= 0xDFFF && pending_high) {
          utf8_append(out, 0x10000 + ((pending_high - 0xD800) << 10) + (v - 0xDC00));
          pending_high = 0;
        } else {
          flush_high();
          if (v >= 0xD800 && v <= 0xDBFF) pending_high = static_cast<char16_t>(v);
          else utf8_append(out, v);
        }
        continue;
      }
      flush_high();
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        default: fail(pos_ - 2, std::string("unexpected escaped character: ") + e);
      }
      continue;
    }
    flush_high();
    out += c;
    ++pos_;
    if (pos_ >= s_.size()) fail(start, "unterminated string literal");
  }
  flush_high();
  ++pos_;  // closing quote
  return out;
}

std::vector<Token> Lexer::run() {
  static const std::pair<const char*, Tok> kTable[] = {
      {"{%", Tok::kOpenStatement}, {"%}", Tok::kCloseStatement}, {"{{", Tok::kOpenExpression},
      {"}}", Tok::kCloseExpression}, {"(", Tok::kOpenParen}, {")", Tok::kCloseParen},
      {"{", Tok::kOpenCurly}, {"}", Tok::kCloseCurly}, {"[", Tok::kOpenSquare},
      {"]", Tok::kCloseSquare}, {",", Tok::kComma}, {".", Tok::kDot}, {":", Tok::kColon},
      {"|", Tok::kPipe}, {"<=", Tok::kComparison}, {">=", Tok::kComparison},
      {"==", Tok::kComparison}, {"!=", Tok::kComparison}, {"<", Tok::kComparison},
      {">", Tok::kComparison}, {"+", Tok::kAdditive}, {"-", Tok::kAdditive},
      {"~", Tok::kAdditive}, {"**", Tok::kPower}, {"*", Tok::kMultiplicative},
      {"//", Tok::kMultiplicative}, {"/", Tok::kMultiplicative}, {"%", Tok::kMultiplicative},
      {"=", Tok::kEquals}};
  int curly_depth = 0;
  while (pos_ < s_.size()) {
    const Tok* last = tokens_.empty() ? nullptr : &tokens_.back().type;
    if (!last || *last == Tok::kCloseStatement || *last == Tok::kCloseExpression ||
        *last == Tok::kComment) {
      const size_t start = pos_;
      while (pos_ < s_.size() &&
             !(s_[pos_] == '{' && (at(pos_ + 1) == '%' || at(pos_ + 1) == '{' ||
                                   at(pos_ + 1) == '#'))) {
        ++pos_;
      }
      if (pos_ > start) {
        push(Tok::kText, s_.substr(start, pos_ - start), start);
        continue;
      }
    }
    if (s_[pos_] == '{' && at(pos_ + 1) == '#') {
      const size_t start = pos_;
      pos_ += 2;
      const bool strip_before = at(pos_) == '-';
      if (strip_before) ++pos_;
      std::string comment;
      while (at(pos_) != '#' || at(pos_ + 1) != '}') {
        if (pos_ + 2 >= s_.size()) fail(start, "missing end of comment tag '#}'");
        comment += s_[pos_++];
      }
      const bool strip_after = !comment.empty() && comment.back() == '-';
      if (strip_after) comment.pop_back();
      if (strip_before) strip_trailing_whitespace();
      push(Tok::kComment, comment, start);
      pos_ += 2;
      if (strip_after) skip_space();
      continue;
    }
    if (starts_at(s_, pos_, "{%-")) {
      strip_trailing_whitespace();
      push(Tok::kOpenStatement, "{%", pos_);
      pos_ += 3;
      continue;
    }
    if (starts_at(s_, pos_, "{{-")) {
      strip_trailing_whitespace();
      push(Tok::kOpenExpression, "{{", pos_);
      curly_depth = 0;
      pos_ += 3;
      continue;
    }
    {
      size_t len;
      while (space_at(pos_, &len)) {
        pos_ += len;
        if (pos_ >= s_.size()) fail(pos_, "unexpected end of input (unclosed tag?)");
      }
    }
    if (starts_at(s_, pos_, "-%}")) {
      push(Tok::kCloseStatement, "%}", pos_);
      pos_ += 3;
      skip_space();
      continue;
    }
    if (starts_at(s_, pos_, "-}}")) {
      push(Tok::kCloseExpression, "}}", pos_);
      pos_ += 3;
      skip_space();
      continue;
    }
    const char c = s_[pos_];
    if (c == '-' || c == '+') {
      const Tok* prev = tokens_.empty() ? nullptr : &tokens_.back().type;
      if (!prev || *prev == Tok::kText) fail(pos_, std::string("unexpected character: ") + c);
      if (*prev != Tok::kIdent && *prev != Tok::kNumber && *prev != Tok::kString &&
          *prev != Tok::kCloseParen && *prev != Tok::kCloseSquare) {
        const size_t start = pos_++;
        std::string num = read_digits();
        if (!num.empty() && at(pos_) == '.' && at(pos_ + 1) >= '0' && at(pos_ + 1) <= '9') {
          ++pos_;
          num += "." + read_digits();
        }
        push(num.empty() ? Tok::kUnary : Tok::kNumber, std::string(1, c) + num, start);
        continue;
      }
    }
    bool matched = false;
    for (const auto& [seq, type] : kTable) {
      const std::string_view sv(seq);
      if (sv == "}}" && curly_depth > 0) continue;
      if (starts_at(s_, pos_, sv)) {
        push(type, std::string(sv), pos_);
        if (type == Tok::kOpenExpression) curly_depth = 0;
        else if (type == Tok::kOpenCurly) ++curly_depth;
        else if (type == Tok::kCloseCurly) --curly_depth;
        pos_ += sv.size();
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (c == '\'' || c == '"') {
      const size_t start = pos_++;
      push(Tok::kString, read_string(c, start), start);
      continue;
    }
    if (c >= '0' && c <= '9') {
      const size_t start = pos_;
      std::string num = read_digits();
      if (tokens_.back().type != Tok::kDot && at(pos_) == '.' && at(pos_ + 1) >= '0' &&
          at(pos_ + 1) <= '9') {
        ++pos_;
        num += "." + read_digits();
      }
      push(Tok::kNumber, num, start);
      continue;
    }
    if (is_word(c)) {
      const size_t start = pos_;
      while (pos_ < s_.size() && is_word(s_[pos_])) ++pos_;
      if (pos_ >= s_.size()) fail(pos_, "unexpected end of input (unclosed tag?)");
      push(Tok::kIdent, s_.substr(start, pos_ - start), start);
      continue;
    }
    fail(pos_, std::string("unexpected character: '") + c + "'");
  }
  return std::move(tokens_);
}

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  Mapped m;
  size_t n = source.size();
  if (n > 0 && source[n - 1] == '\n') --n;
  for (size_t i = 0; i < n; ++i) m.push(source[i], static_cast<uint32_t>(i));
  m = strip_generation_tags(trim_blocks(lstrip_blocks(m)));
  return Lexer(source, std::move(m)).run();
}

}  // namespace mixserve::jinja
