// Template source -> tokens, following @huggingface/jinja's tokenize(): the same preprocessing
// (one trailing newline dropped, lstrip_blocks and trim_blocks on, {% generation %} tags
// removed), the same whitespace control and the same token kinds, so that the parser sees
// exactly what the reference parser sees.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mixserve::jinja {

enum class Tok {
  kText, kNumber, kString, kIdent, kEquals, kOpenParen, kCloseParen, kOpenStatement,
  kCloseStatement, kOpenExpression, kCloseExpression, kOpenSquare, kCloseSquare, kOpenCurly,
  kCloseCurly, kComma, kDot, kColon, kPipe, kAdditive, kMultiplicative, kPower, kComparison,
  kUnary, kComment
};

const char* tok_name(Tok t);

struct Token {
  Tok type;
  std::string value;
  uint32_t offset;  // byte offset in the original template (for line:column in errors)
};

// "line L, column C" of a byte offset (1-based, columns in bytes).
std::string describe_position(std::string_view source, uint32_t offset);

// Throws mixserve::Error naming the position on malformed input.
std::vector<Token> tokenize(std::string_view source);

}  // namespace mixserve::jinja
