// The Jinja engine's bounds and errors: hostile templates end in a mixserve::Error (never a
// hang or a crash), unsupported syntax is named with its line and column, and the JavaScript
// number/string formatting the output depends on. Feature-by-feature output is checked against
// the reference in test_chat_template.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "tokenizer/chat_template.h"
#include "tokenizer/jinja/js_text.h"
#include "util/error.h"

namespace mixserve {
namespace {

std::string render(const std::string& tmpl, ChatTemplateOptions opts = {}) {
  return render_chat_template(tmpl, R"([{"role": "user", "content": "hi"}])", opts);
}

// The error message of rendering `tmpl`, or "" if it rendered.
std::string error_of(const std::string& tmpl, ChatTemplateOptions opts = {}) {
  try {
    render(tmpl, opts);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JinjaSandbox, NestedLoopsHitTheIterationLimit) {
  const std::string e = error_of(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
      "{% endfor %}{% endfor %}{% endfor %}");
  EXPECT_NE(e.find("loop iterations"), std::string::npos) << e;
}

TEST(JinjaSandbox, HugeRangeAndListDoublingAreBounded) {
  EXPECT_NE(error_of("{{ range(10 ** 9) | length }}").find("loop iterations"), std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
                     "{% set ns.l = ns.l + ns.l %}{% endfor %}")
                .find("loop iterations"),
            std::string::npos);
}

TEST(JinjaSandbox, StringGrowthIsBounded) {
  EXPECT_NE(error_of("{% set ns = namespace(s='a') %}{% for i in range(64) %}"
                     "{% set ns.s = ns.s + ns.s %}{% endfor %}")
                .find("bytes"),
            std::string::npos);
  // String repetition does not exist in the reference: an error, not a gigabyte.
  EXPECT_NE(error_of("{{ 'a' * 10 ** 9 }}").find("Unknown operator \"*\""), std::string::npos);
  ChatTemplateOptions small;
  small.limits.max_output_bytes = 10;
  EXPECT_EQ(render("{% for i in range(10) %}x{% endfor %}", small), "xxxxxxxxxx");
  EXPECT_NE(error_of("{% for i in range(11) %}x{% endfor %}", small).find("10 bytes"),
            std::string::npos);
}

TEST(JinjaSandbox, RecursionIsBounded) {
  const std::string e = error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_NE(e.find("limit of 64"), std::string::npos) << e;
  // Exponential fan-out within the depth limit runs into the iteration budget instead.
  ChatTemplateOptions opts;
  opts.limits.max_loop_iterations = 100000;
  const std::string e2 = error_of(
      "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}"
      "{{ f(0) }}", opts);
  EXPECT_NE(e2.find("loop iterations"), std::string::npos) << e2;
}

TEST(JinjaSandbox, DeepNestingIsAnErrorNotAStackOverflow) {
  const std::string deep = "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  EXPECT_NE(error_of(deep).find("nests deeper"), std::string::npos);
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  EXPECT_NE(error_of(chain + " }}").find("nests deeper"), std::string::npos);
  std::string blocks;
  for (int i = 0; i < 1000; ++i) blocks += "{% if true %}";
  EXPECT_NE(error_of(blocks).find("nests deeper"), std::string::npos);
}

TEST(JinjaSandbox, TemplateSizeIsBounded) {
  ChatTemplateOptions opts;
  opts.limits.max_template_bytes = 16;
  EXPECT_NE(error_of(std::string(17, 'x'), opts).find("over the limit"), std::string::npos);
}

TEST(JinjaErrors, FileAccessStatementsAreRejectedWithPosition) {
  for (const char* stmt : {"include 'a'", "import 'a' as b", "extends 'base'", "from 'a' import b"}) {
    const std::string e = error_of(std::string("x\n  {% ") + stmt + " %}");
    EXPECT_NE(e.find("line 2, column 6"), std::string::npos) << e;
    EXPECT_NE(e.find("not supported"), std::string::npos) << e;
  }
}

TEST(JinjaErrors, UnsupportedSyntaxNamesConstructAndPosition) {
  std::string e = error_of("ab\ncd {% call foo() %}x{% endcall %}");
  EXPECT_NE(e.find("line 2, column 7"), std::string::npos) << e;
  EXPECT_NE(e.find("call"), std::string::npos) << e;
  e = error_of("{{ foo( }}");
  EXPECT_NE(e.find("syntax error at line 1"), std::string::npos) << e;
  e = error_of("{% if true %}never closed");
  EXPECT_NE(e.find("missing {% endif %}"), std::string::npos) << e;
  e = error_of("{{ 'unterminated }}");
  EXPECT_NE(e.find("unterminated string"), std::string::npos) << e;
  e = error_of("{{ 'bad \\q escape' }}");
  EXPECT_NE(e.find("escaped character"), std::string::npos) << e;
  e = error_of("{{ 1 @ 2 }}");
  EXPECT_NE(e.find("unexpected character: '@'"), std::string::npos) << e;
}

TEST(JinjaErrors, RuntimeErrorsCarryPositionAndReferenceText) {
  const std::string e = error_of("line one\n{{ messages[0].content | unknownfilter }}");
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("Unknown StringValue filter: unknownfilter"), std::string::npos) << e;
  EXPECT_NE(error_of("{{ raise_exception('Custom: stop') }}").find("Custom: stop"),
            std::string::npos);
  EXPECT_NE(error_of("{{ x is frobnicated }}").find("Unknown test: frobnicated"),
            std::string::npos);
  EXPECT_NE(error_of("{% break %}").find("outside a loop"), std::string::npos);
}

TEST(JinjaExtensions, DivisiblebyTakesAnArgument) {
  // Not in the reference (its tests take no arguments); supported as Jinja defines it.
  EXPECT_EQ(render("{{ 9 is divisibleby(3) }}{{ 10 is divisibleby(3) }}{{ 4 is not divisibleby(2) }}"),
            "truefalsefalse");
}

TEST(JinjaBuiltins, StrftimeNowFormats) {
  const std::string y = render("{{ strftime_now('%Y-%m-%d %%') }}");
  ASSERT_EQ(y.size(), 12u) << y;
  EXPECT_EQ(y[4], '-');
  EXPECT_EQ(y.substr(10), " %");
}

TEST(JsText, NumberToStringFollowsEcmascript) {
  using jinja::js_number_to_string;
  EXPECT_EQ(js_number_to_string(0), "0");
  EXPECT_EQ(js_number_to_string(-0.0), "0");
  EXPECT_EQ(js_number_to_string(1), "1");
  EXPECT_EQ(js_number_to_string(0.1), "0.1");
  EXPECT_EQ(js_number_to_string(1e21), "1e+21");
  EXPECT_EQ(js_number_to_string(1e20), "100000000000000000000");
  EXPECT_EQ(js_number_to_string(1.5e-7), "1.5e-7");
  EXPECT_EQ(js_number_to_string(0.000001), "0.000001");
  EXPECT_EQ(js_number_to_string(-123.456), "-123.456");
  EXPECT_EQ(js_number_to_string(std::pow(2.0, 60)), "1152921504606847000");
  EXPECT_EQ(js_number_to_string(NAN), "NaN");
  EXPECT_EQ(js_number_to_string(-INFINITY), "-Infinity");
}

TEST(JsText, JsonQuoteAndTrim) {
  EXPECT_EQ(jinja::json_quote("a\"\\\n\x01é😀", false), "\"a\\\"\\\\\\n\\u0001é😀\"");
  EXPECT_EQ(jinja::json_quote("é😀\x7f", true), "\"\\u00e9\\ud83d\\ude00\\u007f\"");
  EXPECT_EQ(jinja::js_trim("\xC2\xA0 x \xE3\x80\x80", true, true), "x");  // NBSP, ideographic
  EXPECT_EQ(jinja::utf16_length("a😀"), 3u);
  EXPECT_TRUE(std::isnan(jinja::js_string_to_number("12px")));
  EXPECT_EQ(jinja::js_string_to_number(" 0x1F "), 31);
  EXPECT_EQ(jinja::js_parse_int("  42px"), 42);
}

}  // namespace
}  // namespace mixserve
