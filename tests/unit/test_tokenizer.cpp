// Tokenizer: loading errors, a hand-made tokenizer.json with known merges and byte fallback,
// added-token splitting, Metaspace, config handling, and the shipped Mixtral tokenizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace mixserve {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;
const std::filesystem::path kSource = MIXSERVE_SOURCE_DIR;

// Tiny vocabulary: specials, three byte tokens (the UTF-8 of "€"), and a few pieces whose
// merges test rank order ("a b" before "▁ a") and leftmost tie-breaking ("a a").
json tiny_tokenizer() {
  json vocab = {{"<unk>", 0},  {"<s>", 1},  {"</s>", 2}, {"<0xE2>", 3}, {"<0x82>", 4},
                {"<0xAC>", 5}, {"▁", 6},    {"a", 7},    {"b", 8},      {"c", 9},
                {"ab", 10},    {"abc", 11}, {"▁a", 12},  {"▁ab", 13},   {"aa", 14}};
  auto special = [](int id, const char* s) {
    return json{{"id", id},        {"content", s},        {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  return {{"version", "1.0"},
          {"added_tokens", {special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "▁"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", "<unk>"},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", {"a b", "ab c", "▁ a", "▁a b", "a a"}}}}};
}

std::shared_ptr<const Tokenizer> load(const json& tok, const json& cfg = json::object()) {
  return Tokenizer::from_json(tok.dump(), cfg.dump());
}

std::string load_error(const json& tok) {
  try {
    load(tok);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerLoad, MissingFileNamesIt) {
  const auto dir = std::filesystem::temp_directory_path() / "mixserve_tok_missing";
  std::filesystem::create_directories(dir);
  try {
    Tokenizer::from_dir(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, BadJson) {
  try {
    Tokenizer::from_json("{\"model\": [1, 2", "{}");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid JSON"), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, UnsupportedPartsAreNamed) {
  json t = tiny_tokenizer();
  t["model"]["type"] = "Unigram";
  EXPECT_NE(load_error(t).find("\"Unigram\" is not supported"), std::string::npos);
  t = tiny_tokenizer();
  t["normalizer"] = {{"type", "NFC"}};
  EXPECT_NE(load_error(t).find("\"NFC\""), std::string::npos);
  t = tiny_tokenizer();
  t["decoder"] = {{"type", "ByteLevel"}};
  EXPECT_NE(load_error(t).find("\"ByteLevel\""), std::string::npos);
  t = tiny_tokenizer();
  t["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_NE(load_error(t).find("\"Whitespace\""), std::string::npos);
  t = tiny_tokenizer();
  t["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", " +"}};
  EXPECT_NE(load_error(t).find("Regex"), std::string::npos);
}

TEST(TokenizerLoad, MergesMustReferToTheVocab) {
  json t = tiny_tokenizer();
  t["model"]["merges"] = {"a b", "x y"};
  EXPECT_NE(load_error(t).find("merges[1] \"x y\": token \"x\" is not in the vocab"),
            std::string::npos)
      << load_error(t);
  t["model"]["merges"] = {"b c"};  // "bc" is not a piece
  EXPECT_NE(load_error(t).find("merged token \"bc\""), std::string::npos) << load_error(t);
  t["model"]["merges"] = {"a b c"};
  EXPECT_NE(load_error(t).find("not two tokens"), std::string::npos);
}

TEST(TokenizerBpe, RankOrderDecides) {
  const auto tok = load(tiny_tokenizer());
  // "▁abc": "a b" (rank 0) first, then "ab c" (rank 1); "▁a b" never gets its chance.
  EXPECT_EQ(tok->encode("abc", false), (Ids{6, 11}));
  EXPECT_EQ(tok->encode("abc"), (Ids{1, 6, 11}));
  // "▁ab": "a b" first; there is no "▁ ab" merge, so "▁ab" (id 13) is never formed.
  EXPECT_EQ(tok->encode("ab", false), (Ids{6, 10}));
}

TEST(TokenizerBpe, EqualRanksMergeLeftmostFirst) {
  json t = tiny_tokenizer();
  t["normalizer"] = nullptr;
  const auto tok = load(t);
  EXPECT_EQ(tok->encode("aaa", false), (Ids{14, 7}));
  EXPECT_EQ(tok->encode("aaaa", false), (Ids{14, 14}));
}

TEST(TokenizerBpe, MergesAsPairs) {
  json t = tiny_tokenizer();
  t["model"]["merges"] = json::array();
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"a", "b"}, {"ab", "c"}, {"▁", "a"}, {"▁a", "b"}, {"a", "a"}}) {
    t["model"]["merges"].push_back(json::array({a, b}));
  }
  EXPECT_EQ(load(t)->encode("abc", false), (Ids{6, 11}));
}

TEST(TokenizerBpe, ByteFallbackAndUnknown) {
  const auto tok = load(tiny_tokenizer());
  EXPECT_EQ(tok->encode("€", false), (Ids{6, 3, 4, 5}));
  // "d" is not in the vocab and neither is <0x64>: <unk>, and a run of them fuses.
  EXPECT_EQ(tok->encode("add", false), (Ids{12, 0}));
  json t = tiny_tokenizer();
  t["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(t)->encode("add", false), (Ids{12, 0, 0}));
  t["model"]["byte_fallback"] = false;
  EXPECT_EQ(load(t)->encode("€a", false), (Ids{6, 0, 7}));
}

TEST(TokenizerDecode, ByteFallbackRunsAndStrip) {
  const auto tok = load(tiny_tokenizer());
  EXPECT_EQ(tok->decode(Ids{6, 3, 4, 5}), "€");
  EXPECT_EQ(tok->decode(Ids{1, 12, 6, 3, 4, 5}), "<s> a €");
  EXPECT_EQ(tok->decode(Ids{1, 12, 6, 3, 4, 5}, true), "a €");
  // An incomplete run becomes one U+FFFD per byte; a later token closes the run.
  EXPECT_EQ(tok->decode(Ids{3, 4}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode(Ids{3, 4, 7}),
            "\xEF\xBF\xBD\xEF\xBF\xBD"
            "a");
  // Only one leading space is stripped, and only from the start of the whole text.
  EXPECT_EQ(tok->decode(Ids{6, 6, 7}), " a");
  EXPECT_EQ(tok->decode(Ids{7, 6}), "a ");
  EXPECT_EQ(tok->decode(Ids{7, 99999, -1}), "a");  // unknown ids are dropped
}

TEST(TokenizerAddedTokens, SpecialTextIsSplitOutFirst) {
  const auto tok = load(tiny_tokenizer());
  // Each piece between special tokens is normalized on its own (Prepend adds its "▁").
  EXPECT_EQ(tok->encode("a<s>b"), (Ids{1, 12, 1, 6, 8}));
  EXPECT_EQ(tok->encode("<s>"), (Ids{1, 1}));
  EXPECT_EQ(tok->encode("</s></s>", false), (Ids{2, 2}));
  EXPECT_EQ(tok->encode(""), (Ids{1}));
  EXPECT_EQ(tok->encode("<s", false), tok->encode("<s", false));  // no partial match
  EXPECT_EQ(tok->decode(Ids{1, 12, 1, 6, 8}), "<s> a<s> b");
}

TEST(TokenizerAddedTokens, LongestMatchAndStripFlags) {
  json t = tiny_tokenizer();
  t["model"]["vocab"]["<x>"] = 15;
  t["model"]["vocab"]["<x>>"] = 16;
  t["added_tokens"].push_back({{"id", 15},
                               {"content", "<x>"},
                               {"lstrip", true},
                               {"rstrip", true},
                               {"normalized", false},
                               {"special", false}});
  t["added_tokens"].push_back(
      {{"id", 16}, {"content", "<x>>"}, {"normalized", false}, {"special", false}});
  const auto tok = load(t);
  EXPECT_EQ(tok->encode("a <x> b", false), (Ids{12, 15, 6, 8}));
  EXPECT_EQ(tok->encode("a<x>>b", false), (Ids{12, 16, 6, 8}));
  EXPECT_FALSE(tok->is_special(15));
  EXPECT_TRUE(tok->is_special(1));
  // Non-special added tokens survive skip_special_tokens.
  EXPECT_EQ(tok->decode(Ids{12, 15, 1}, true), "a<x>");
}

TEST(TokenizerAddedTokens, NormalizedTokenMatchesNormalizedText) {
  json t = tiny_tokenizer();
  t["model"]["vocab"]["ca"] = 15;
  t["added_tokens"].push_back(
      {{"id", 15}, {"content", "ca"}, {"normalized", true}, {"special", false}});
  EXPECT_EQ(load(t)->encode("aca", false), (Ids{12, 15}));
}

json metaspace_tokenizer(const char* scheme) {
  json t = tiny_tokenizer();
  t["normalizer"] = nullptr;
  t["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", scheme}, {"split", true}};
  t["decoder"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", scheme}, {"split", true}};
  return t;
}

TEST(TokenizerMetaspace, PrependSchemes) {
  const auto first = load(metaspace_tokenizer("first"));
  EXPECT_EQ(first->encode("ab ab", false), (Ids{6, 10, 6, 10}));
  EXPECT_EQ(first->encode("<s>ab", false), (Ids{1, 10}));  // not at the start of the text
  EXPECT_EQ(load(metaspace_tokenizer("always"))->encode("<s>ab", false), (Ids{1, 6, 10}));
  EXPECT_EQ(load(metaspace_tokenizer("never"))->encode("ab", false), (Ids{10}));
  // Legacy form: add_prefix_space instead of prepend_scheme.
  json legacy = metaspace_tokenizer("always");
  legacy["pre_tokenizer"].erase("prepend_scheme");
  legacy["pre_tokenizer"]["add_prefix_space"] = false;
  EXPECT_EQ(load(legacy)->encode("ab", false), (Ids{10}));
  // split=false keeps "▁a▁b" one word, so "▁a b"... merges see the whole piece.
  json nosplit = metaspace_tokenizer("always");
  nosplit["pre_tokenizer"]["split"] = false;
  EXPECT_EQ(load(nosplit)->encode("a a", false), (Ids{12, 12}));
}

TEST(TokenizerMetaspace, DecoderDropsReplacementInFirstToken) {
  EXPECT_EQ(load(metaspace_tokenizer("first"))->decode(Ids{6, 10, 6, 10}), "ab ab");
  EXPECT_EQ(load(metaspace_tokenizer("never"))->decode(Ids{6, 10, 6, 10}), " ab ab");
}

TEST(TokenizerConfig, LlamaClassFlagsDecideSpecialTokens) {
  const json base = {{"tokenizer_class", "LlamaTokenizer"},
                     {"bos_token", "<s>"},
                     {"eos_token", {{"content", "</s>"}, {"special", true}}}};
  json cfg = base;
  cfg["add_bos_token"] = false;
  EXPECT_EQ(load(tiny_tokenizer(), cfg)->encode("abc"), (Ids{6, 11}));
  cfg = base;
  cfg["add_eos_token"] = true;
  const auto tok = load(tiny_tokenizer(), cfg);
  EXPECT_EQ(tok->encode("abc"), (Ids{1, 6, 11, 2}));
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), (Ids{2}));
  EXPECT_EQ(tok->eos_token(), "</s>");
  // Without a config the tokenizer.json post-processor applies, and no BOS id is known.
  EXPECT_EQ(load(tiny_tokenizer())->bos_id(), -1);
}

// Mode selection. Raw: tokenizer.json's own steps (Prepend "▁" to every piece, spaces -> "▁").
// Transformers mode (a Llama class in the config): Metaspace with split false, whose prepend
// scheme follows legacy / add_prefix_space, and transformers' decoder.
json with_class(const char* cls, json extra = json::object()) {
  extra["tokenizer_class"] = cls;
  extra["bos_token"] = "<s>";
  return extra;
}

TEST(TokenizerModes, RawPipelineWithoutLlamaClass) {
  for (const json& cfg :
       {json::object(), with_class("PreTrainedTokenizerFast"), with_class("CodeLlamaTokenizer")}) {
    const auto tok = load(tiny_tokenizer(), cfg);
    EXPECT_EQ(tok->encode(" ab", false), (Ids{6, 6, 10})) << cfg.dump();  // "▁" + "▁ab"
    EXPECT_EQ(tok->encode("<s>ab", false), (Ids{1, 6, 10})) << cfg.dump();
  }
}

TEST(TokenizerModes, LlamaClassLegacyTrueIsAlways) {
  for (const char* cls : {"LlamaTokenizer", "LlamaTokenizerFast"}) {
    const auto tok = load(tiny_tokenizer(), with_class(cls, {{"legacy", true}}));
    EXPECT_EQ(tok->encode(" ab", false), (Ids{6, 10})) << cls;  // already starts with "▁"
    EXPECT_EQ(tok->encode("ab", false), (Ids{6, 10})) << cls;
    EXPECT_EQ(tok->encode("<s>ab", false), (Ids{1, 6, 10})) << cls;  // every piece gets one
    EXPECT_EQ(tok->encode("ab<s> ab", false), (Ids{6, 10, 1, 6, 10})) << cls;
    EXPECT_EQ(tok->decode(Ids{6, 10, 6, 10}), "ab ab") << cls;
  }
}

TEST(TokenizerModes, LlamaClassLegacyFalseOrAbsentIsFirst) {
  for (const json& cfg :
       {with_class("LlamaTokenizer", {{"legacy", false}}), with_class("LlamaTokenizer"),
        with_class("LlamaTokenizer", {{"legacy", nullptr}})}) {
    const auto tok = load(tiny_tokenizer(), cfg);
    EXPECT_EQ(tok->encode("ab", false), (Ids{6, 10})) << cfg.dump();
    EXPECT_EQ(tok->encode(" ab", false), (Ids{6, 10})) << cfg.dump();
    EXPECT_EQ(tok->encode("<s>ab", false), (Ids{1, 10})) << cfg.dump();  // not at text start
    EXPECT_EQ(tok->encode("ab<s> ab", false), (Ids{6, 10, 1, 6, 10})) << cfg.dump();
  }
}

TEST(TokenizerModes, AddPrefixSpaceFalseIsNever) {
  const auto tok =
      load(tiny_tokenizer(),
           with_class("LlamaTokenizer", {{"legacy", true}, {"add_prefix_space", false}}));
  EXPECT_EQ(tok->encode("ab", false), (Ids{10}));
  EXPECT_EQ(tok->encode(" ab", false), (Ids{6, 10}));
  // No Strip in the decoder: the leading space of "▁ab" stays.
  EXPECT_EQ(tok->decode(Ids{6, 10}), " ab");
  EXPECT_EQ(load(tiny_tokenizer(), with_class("LlamaTokenizer"))->decode(Ids{6, 10}), "ab");
}

TEST(TokenizerModes, LlamaClassIgnoresTheFilesTextSteps) {
  json t = tiny_tokenizer();
  t["normalizer"] = {{"type", "NFKC"}};
  t["decoder"] = nullptr;
  EXPECT_NE(load_error(t).find("NFKC"), std::string::npos);  // raw mode reads it
  const auto tok = load(t, with_class("LlamaTokenizer", {{"legacy", true}}));
  EXPECT_EQ(tok->encode("a b", false), (Ids{12, 6, 8}));  // "▁a▁b": no merge "▁ b"
  EXPECT_EQ(tok->decode(Ids{1, 12, 6, 8}), "<s> a b");    // transformers' decoder, not null's
  const json bad_cfg = with_class("LlamaTokenizer", {{"legacy", "yes"}});
  try {
    load(tiny_tokenizer(), bad_cfg);
    ADD_FAILURE() << "a non-boolean legacy must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("legacy"), std::string::npos) << e.what();
  }
}

TEST(TokenizerConfig, FromDirReadsGenerationConfigAndTemplateFile) {
  const auto dir = std::filesystem::temp_directory_path() / "mixserve_tok_dir";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tiny_tokenizer().dump();
  std::ofstream(dir / "tokenizer_config.json")
      << json{{"eos_token", "</s>"}, {"chat_template", "from config"}}.dump();
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [2, 0]})";
  std::ofstream(dir / "chat_template.jinja") << "from file";
  const auto tok = Tokenizer::from_dir(dir);
  EXPECT_EQ(tok->eos_ids(), (Ids{2, 0}));
  EXPECT_EQ(tok->chat_template(), "from file");
  std::filesystem::remove_all(dir);
}

TEST(TokenizerConfig, CleanUpTokenizationSpaces) {
  EXPECT_EQ(tokenizer_detail::clean_up_tokenization("a , b . I 'm here , are n't you ?"),
            "a, b. I'm here, aren't you?");
  json t = tiny_tokenizer();
  t["model"]["vocab"]["▁,"] = 15;
  EXPECT_EQ(load(t, {{"clean_up_tokenization_spaces", true}})->decode(Ids{12, 15}), "a,");
  EXPECT_EQ(load(t)->decode(Ids{12, 15}), "a ,");
}

TEST(TokenizerMixtral, ShippedAssets) {
  const auto tok = Tokenizer::from_dir(kSource / "assets/tokenizer/mixtral");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), (Ids{2}));
  EXPECT_NE(tok->chat_template().find("[INST]"), std::string::npos);
  EXPECT_EQ(tok->id_to_piece(28705), "▁");
  // Transformers mode (LlamaTokenizer, legacy true): ids from transformers 5.17.
  EXPECT_EQ(tok->encode(" leading space"), (Ids{1, 5374, 2764}));
  EXPECT_EQ(tok->encode("     "), (Ids{1, 355}));
  EXPECT_EQ(tok->encode("before <s> after </s> end"),
            (Ids{1, 1159, 28705, 1, 1024, 28705, 2, 948}));
  EXPECT_EQ(tok->encode("grabbed"), (Ids{1, 13300}));
  EXPECT_EQ(tok->decode(Ids{1, 28705, 243, 162, 169, 156}), "<s> 🦙");
  EXPECT_EQ(tok->decode(Ids{1, 28705, 243, 162, 169, 156}, true), "🦙");
}

// tokenizer.json alone (no Llama class): its own normalizer, as mistral-tokenizer-js and the
// tokenizers library run it. Reference ids from mistral-tokenizer-js's own test cases.
TEST(TokenizerMixtral, TokenizerJsonAlone) {
  std::ifstream in(kSource / "assets/tokenizer/mixtral/tokenizer.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto tok = Tokenizer::from_json(text);
  EXPECT_EQ(tok->encode("grabbed"), (Ids{1, 13300}));
  EXPECT_EQ(tok->encode("           grabbed"), (Ids{1, 17422, 13300}));
  EXPECT_EQ(tok->encode("ax\n####\nboo"), (Ids{1, 6056, 13, 2000, 13, 1798, 28709}));
  EXPECT_EQ(tok->encode("🦙Ꙋ"), (Ids{1, 28705, 243, 162, 169, 156, 237, 156, 141}));
  EXPECT_EQ(tok->encode(" leading space"), (Ids{1, 28705, 5374, 2764}));
  EXPECT_EQ(tok->decode(Ids{1, 28705, 243, 162, 169, 156}, true), "🦙");
}

}  // namespace
}  // namespace mixserve
