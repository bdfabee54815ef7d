// JavaScript string and number semantics on UTF-8 text.
//
// The reference renderer (@huggingface/jinja) runs on JavaScript: its strings are UTF-16, its
// numbers are doubles, and String(x), JSON.stringify(x), trim() and parseInt() have exact rules
// that decide the rendered bytes. These helpers reproduce those rules on UTF-8 std::strings so
// that the C++ renderer prints the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mixserve::jinja {

// Decodes UTF-8 into code points; invalid bytes become U+FFFD (as Node's decoder does).
std::vector<char32_t> utf8_decode(std::string_view s);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(const std::vector<char32_t>& cps, size_t begin, size_t end);

// The WhiteSpace + LineTerminator set of ECMAScript (what /\s/ and String.prototype.trim use).
bool is_js_space(char32_t cp);
std::string js_trim(std::string_view s, bool start, bool end);

// String.prototype.length: UTF-16 code units.
size_t utf16_length(std::string_view s);
// String.prototype.at(i) on UTF-16 units; half of a surrogate pair reads as U+FFFD (that is what
// reaches the output once Node encodes the lone surrogate as UTF-8). Returns false if out of range.
bool utf16_at(std::string_view s, double index, std::string* out);

// String(number) for a double, e.g. 1 -> "1", 0.1 -> "0.1", 1e21 -> "1e+21", NaN -> "NaN".
std::string js_number_to_string(double v);
// Number(string) (the ToNumber abstract operation), NaN when not numeric.
double js_string_to_number(std::string_view s);
// parseInt(s, 10) and parseFloat(s); NaN when no digits.
double js_parse_int(std::string_view s);
double js_parse_float(std::string_view s);

// JSON.stringify(string); with ensure_ascii every UTF-16 unit >= 0x7f becomes \uXXXX.
std::string json_quote(std::string_view s, bool ensure_ascii);

// toUpperCase / toLowerCase. ASCII letters only: other scripts pass through unchanged.
std::string ascii_upper(std::string_view s);
std::string ascii_lower(std::string_view s);

}  // namespace mixserve::jinja
