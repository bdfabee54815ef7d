#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/text_output.h"
#include "engine_fakes.h"

namespace mixserve {
namespace {

// Feeds pieces one by one; returns (emitted text, index of the piece that stopped or -1).
std::pair<std::string, int> feed(StopStringMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    bool stopped = false;
    out += m.push(pieces[i], true, &stopped);
    if (stopped) return {out, int(i)};
  }
  return {out + m.flush(), -1};
}

TEST(StopStrings, MatchAcrossPiecesAndCutBeforeTheStop) {
  StopStringMatcher m({"END"});
  auto [text, at] = feed(m, {"hello E", "N", "Dworld"});
  EXPECT_EQ(text, "hello ");
  EXPECT_EQ(at, 2);
}

TEST(StopStrings, HoldBackOnlyWhatCouldStartAStop) {
  StopStringMatcher m({"abc"});
  bool stopped = false;
  EXPECT_EQ(m.push("xxa", true, &stopped), "xx");  // "a" may begin "abc"
  EXPECT_EQ(m.push("b", true, &stopped), "");      // "ab" still may
  EXPECT_EQ(m.push("d", true, &stopped), "abd");   // no longer
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.flush(), "");
}

TEST(StopStrings, EarliestOfSeveralStopsWins) {
  StopStringMatcher m({"xyz", "b"});
  auto [text, at] = feed(m, {"axy", "zb"});
  EXPECT_EQ(text, "a");
  EXPECT_EQ(at, 1);
}

TEST(StopStrings, StopInsideOnePiece) {
  StopStringMatcher m({"\n\n"});
  auto [text, at] = feed(m, {"one\n\ntwo"});
  EXPECT_EQ(text, "one");
  EXPECT_EQ(at, 0);
}

TEST(StopStrings, NoMatchingBeforeMinTokens) {
  StopStringMatcher m({"ab"});
  bool stopped = false;
  EXPECT_EQ(m.push("ab", /*match=*/false, &stopped), "ab");
  EXPECT_FALSE(stopped);
}

TEST(StopStrings, UnfinishedPrefixIsFlushed) {
  StopStringMatcher m({"abc"});
  auto [text, at] = feed(m, {"zz", "ab"});
  EXPECT_EQ(text, "zzab");
  EXPECT_EQ(at, -1);
}

TEST(TextOutput, ConcatenatedDeltasEqualDecode) {
  auto tok = std::make_shared<testing::FakeTokenizer>();
  std::vector<int32_t> prompt = {5, 6, 7};
  TextOutput out(tok, prompt, true, {});
  std::vector<int32_t> gen = {1, 2, 0, 30, 63};
  std::string text;
  for (int32_t id : gen) {
    bool stopped = false;
    text += out.push(id, true, &stopped);
  }
  text += out.finish();
  EXPECT_EQ(text, tok->decode(gen, /*skip_special=*/true));
}

}  // namespace
}  // namespace mixserve
