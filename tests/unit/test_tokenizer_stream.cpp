// IncrementalDetokenizer: on every corpus entry (and on random id streams full of byte-
// fallback tokens) the pushed pieces concatenate to decode(prompt + generated) minus
// decode(prompt), and no piece is ever partial UTF-8. Also the Hugging Face golden file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "tokenizer/decoder.h"
#include "tokenizer/tokenizer.h"

namespace mixserve {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;
const std::filesystem::path kSource = MIXSERVE_SOURCE_DIR;

std::shared_ptr<const Tokenizer> mixtral() {
  static const auto tok = Tokenizer::from_dir(kSource / "assets/tokenizer/mixtral");
  return tok;
}

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

// What a client must see: the completion's text given the prompt as context.
std::string expected_completion(const Tokenizer& tok, const Ids& prompt, const Ids& gen,
                                bool skip) {
  Ids all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const std::string full = tok.decode(all, skip), head = tok.decode(prompt, skip);
  EXPECT_EQ(full.compare(0, head.size(), head), 0) << "prompt text is not a prefix";
  return full.substr(head.size());
}

std::string stream(const std::shared_ptr<const Tokenizer>& tok, const Ids& prompt, const Ids& gen,
                   bool skip) {
  IncrementalDetokenizer detok(tok, prompt, skip);
  std::string text;
  for (const int32_t id : gen) {
    const std::string piece = detok.push(id);
    EXPECT_TRUE(tokenizer_detail::valid_utf8(piece)) << "partial UTF-8 emitted after id " << id;
    text += piece;
  }
  const std::string tail = detok.finish();
  EXPECT_TRUE(tokenizer_detail::valid_utf8(tail));
  return text + tail;
}

TEST(IncrementalDetokenizer, CorpusStreamsReassembleExactly) {
  const auto tok = mixtral();
  const json corpus = read_json(kSource / "tests/data/tokenizer_corpus.json");
  const Ids prompt = tok->encode("[INST] Say something. [/INST]");
  for (const json& entry : corpus) {
    const std::string text = entry.get<std::string>();
    const Ids gen = tok->encode(text, false);
    for (const bool skip : {true, false}) {
      EXPECT_EQ(stream(tok, prompt, gen, skip), expected_completion(*tok, prompt, gen, skip))
          << "text: " << text.substr(0, 80);
    }
    // No prompt: the stream is decode(gen), first leading space stripped as decode() does.
    EXPECT_EQ(stream(tok, {}, gen, true), tok->decode(gen, true)) << text.substr(0, 80);
  }
}

TEST(IncrementalDetokenizer, LeadingSpaceFollowsThePrompt) {
  const auto tok = mixtral();
  const Ids gen = tok->encode("Hello", false);  // "▁Hello"
  EXPECT_EQ(stream(tok, tok->encode("[INST] Hi [/INST]"), gen, true), " Hello");
  EXPECT_EQ(stream(tok, {1}, gen, true), "Hello");  // only BOS: nothing to follow
  EXPECT_EQ(stream(tok, {}, gen, true), "Hello");
}

TEST(IncrementalDetokenizer, HoldsByteRunsUntilTheyClose) {
  const auto tok = mixtral();
  // "🦙" is four <0xXX> tokens (243 162 169 156); nothing shows until the run is closed.
  IncrementalDetokenizer detok(tok, tok->encode("Look:"), true);
  EXPECT_EQ(detok.push(28705), " ");
  EXPECT_EQ(detok.push(243), "");
  EXPECT_EQ(detok.push(162), "");
  EXPECT_EQ(detok.push(169), "");
  EXPECT_EQ(detok.push(156), "");
  EXPECT_EQ(detok.push(2), "");  // a skipped special does not close the run for the decoder
  EXPECT_EQ(detok.push(22557), "🦙 Hello");
  EXPECT_EQ(detok.finish(), "");
  // An invalid run (a lone lead byte) becomes U+FFFD per byte, as in decode().
  IncrementalDetokenizer bad(tok, {}, true);
  EXPECT_EQ(bad.push(22557), "Hello");
  EXPECT_EQ(bad.push(13), "");  // "\n" is a byte token too
  EXPECT_EQ(bad.push(243), "");
  EXPECT_EQ(bad.finish(), "\xEF\xBF\xBD\xEF\xBF\xBD");  // the whole run {0A F0} is invalid
}

TEST(IncrementalDetokenizer, RandomIdStreams) {
  const auto tok = mixtral();
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any(0, 31999), byte(3, 258), coin(0, 2);
  const Ids prompt = tok->encode("Random:");
  for (int trial = 0; trial < 200; ++trial) {
    Ids gen(static_cast<size_t>(1 + trial % 40));
    for (int32_t& id : gen) id = coin(rng) == 0 ? any(rng) : byte(rng);  // mostly byte tokens
    for (const bool skip : {true, false}) {
      EXPECT_EQ(stream(tok, prompt, gen, skip), expected_completion(*tok, prompt, gen, skip))
          << "trial " << trial;
    }
  }
}

// tests/golden/tokenizer_hf.json: {"reference": {...}, "entries": [{"text", "ids",
// "ids_no_special", "decoded", "decoded_skip_special"}, ...]} made with Hugging Face
// transformers 5 (AutoTokenizer on assets/tokenizer/mixtral: transformers mode).
TEST(TokenizerGolden, MatchesHuggingFace) {
  const auto path = kSource / "tests/golden/tokenizer_hf.json";
  if (!std::filesystem::exists(path)) {
    GTEST_SKIP() << "tests/golden/tokenizer_hf.json absent: made on a machine with transformers";
  }
  const auto tok = mixtral();
  const json golden = read_json(path);
  const json& entries = golden.is_array() ? golden : golden.at("entries");
  ASSERT_GE(entries.size(), 40u);
  for (const json& g : entries) {
    const std::string text = g.at("text").get<std::string>();
    const Ids ids = g.at("ids").get<Ids>();
    EXPECT_EQ(tok->encode(text), ids) << "text: " << text.substr(0, 80);
    if (g.contains("ids_no_special")) {
      EXPECT_EQ(tok->encode(text, false), g.at("ids_no_special").get<Ids>())
          << "text: " << text.substr(0, 80);
    }
    if (g.contains("decoded")) {
      EXPECT_EQ(tok->decode(ids), g.at("decoded").get<std::string>());
    }
    if (g.contains("decoded_skip_special")) {
      EXPECT_EQ(tok->decode(ids, true), g.at("decoded_skip_special").get<std::string>());
    }
  }
}

}  // namespace
}  // namespace mixserve
