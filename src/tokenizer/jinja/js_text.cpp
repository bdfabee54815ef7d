#include "tokenizer/jinja/js_text.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace mixserve::jinja {

std::vector<char32_t> utf8_decode(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8_encode(const std::vector<char32_t>& cps, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) utf8_append(out, cps[i]);
  return out;
}

bool is_js_space(char32_t cp) {
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000: case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::string js_trim(std::string_view s, bool start, bool end) {
  // Fast path: pure ASCII ends.
  const auto cps = utf8_decode(s);
  size_t b = 0, e = cps.size();
  if (start) while (b < e && is_js_space(cps[b])) ++b;
  if (end) while (e > b && is_js_space(cps[e - 1])) --e;
  if (b == 0 && e == cps.size()) return std::string(s);
  return utf8_encode(cps, b, e);
}

size_t utf16_length(std::string_view s) {
  size_t n = 0;
  for (char32_t cp : utf8_decode(s)) n += cp >= 0x10000 ? 2 : 1;
  return n;
}

bool utf16_at(std::string_view s, double index, std::string* out) {
  const auto cps = utf8_decode(s);
  std::vector<char32_t> units;  // 0xFFFD marks half of a pair
  for (char32_t cp : cps) {
    if (cp >= 0x10000) {
      units.push_back(0xFFFD);
      units.push_back(0xFFFD);
    } else {
      units.push_back(cp);
    }
  }
  double i = std::isnan(index) ? 0 : std::trunc(index);
  if (i < 0) i += static_cast<double>(units.size());
  if (i < 0 || i >= static_cast<double>(units.size())) return false;
  out->clear();
  utf8_append(*out, units[static_cast<size_t>(i)]);
  return true;
}

std::string js_number_to_string(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0) return "0";
  // Shortest round-trip digits and exponent, then ECMAScript Number::toString layout.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  const int exp10 = std::atoi(sci.c_str() + epos + 1);
  std::string digits;
  for (char c : mant) if (c != '.') digits += c;
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;  // value = 0.digits * 10^n
  std::string out;
  if (k <= n && n <= 21) {
    out = digits + std::string(n - k, '0');
  } else if (0 < n && n <= 21) {
    out = digits.substr(0, n) + "." + digits.substr(n);
  } else if (-6 < n && n <= 0) {
    out = "0." + std::string(-n, '0') + digits;
  } else {
    out = digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += (n - 1 >= 0) ? "e+" : "e-";
    out += std::to_string(std::abs(n - 1));
  }
  return sign + out;
}

namespace {

// Longest prefix of s (from i) that is a StrDecimalLiteral without sign; returns its length.
size_t decimal_prefix(std::string_view s, size_t i) {
  size_t j = i;
  bool digits = false;
  while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j, digits = true;
  if (j < s.size() && s[j] == '.') {
    size_t k = j + 1;
    bool frac = false;
    while (k < s.size() && s[k] >= '0' && s[k] <= '9') ++k, frac = true;
    if (digits || frac) {
      j = k;
      digits = true;
    }
  }
  if (!digits) return 0;
  if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
    size_t k = j + 1;
    if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
    size_t d = k;
    while (k < s.size() && s[k] >= '0' && s[k] <= '9') ++k;
    if (k > d) j = k;
  }
  return j - i;
}

double to_double(std::string_view s) {
  return std::strtod(std::string(s).c_str(), nullptr);
}

}  // namespace

double js_string_to_number(std::string_view raw) {
  const std::string s = js_trim(raw, true, true);
  if (s.empty()) return 0;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X' || s[1] == 'o' || s[1] == 'O' ||
                                      s[1] == 'b' || s[1] == 'B')) {
    const int base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;
    double v = 0;
    for (size_t i = 2; i < s.size(); ++i) {
      const char c = s[i];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99;
      if (d >= base) return nan;
      v = v * base + d;
    }
    return v;
  }
  size_t i = 0;
  double sign = 1;
  if (s[0] == '+' || s[0] == '-') {
    sign = s[0] == '-' ? -1 : 1;
    i = 1;
  }
  if (s.substr(i) == "Infinity") return sign * std::numeric_limits<double>::infinity();
  const size_t len = decimal_prefix(s, i);
  if (len == 0 || i + len != s.size()) return nan;
  return sign * to_double(std::string_view(s).substr(i, len));
}

double js_parse_int(std::string_view raw) {
  const std::string s = js_trim(raw, true, false);
  size_t i = 0;
  double sign = 1;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) sign = s[i++] == '-' ? -1 : 1;
  size_t j = i;
  while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
  if (j == i) return std::numeric_limits<double>::quiet_NaN();
  return sign * to_double(std::string_view(s).substr(i, j - i));
}

double js_parse_float(std::string_view raw) {
  const std::string s = js_trim(raw, true, false);
  size_t i = 0;
  double sign = 1;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) sign = s[i++] == '-' ? -1 : 1;
  if (s.compare(i, 8, "Infinity") == 0) return sign * std::numeric_limits<double>::infinity();
  const size_t len = decimal_prefix(s, i);
  if (len == 0) return std::numeric_limits<double>::quiet_NaN();
  return sign * to_double(std::string_view(s).substr(i, len));
}

std::string json_quote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  char buf[16];
  for (char32_t cp : utf8_decode(s)) {
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (cp < 0x20) {
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      out += buf;
    } else if (ensure_ascii && cp >= 0x7f) {
      if (cp >= 0x10000) {
        const char32_t v = cp - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                      static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(cp));
      }
      out += buf;
    } else {
      utf8_append(out, cp);
    }
  }
  out += '"';
  return out;
}

std::string ascii_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  return out;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

}  // namespace mixserve::jinja
