// `mixserve tokenize`: encode text with a model folder's tokenizer (or decode ids).
//   --text T            -> {"ids":[...]}           (BOS as the tokenizer config says)
//   --decode 1,2,3      -> {"text":"..."}
//   --jsonl-in FILE     -> one line per input line (a JSON string):
//                          {"ids":[...],"decoded":"...","decoded_skip_special":"..."}
// --model may be a folder holding tokenizer.json or synthetic:PRESET (the shipped Mixtral
// tokenizer, which synthetic models use).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/paths.h"

namespace mixserve::cli {
namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::vector<int32_t> parse_ids(const std::string& list) {
  std::vector<int32_t> ids;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    int id = 0;
    try {
      id = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    MIXSERVE_CHECK(used == item.size(), "--decode: \"", item, "\" is not an integer id");
    ids.push_back(id);
  }
  return ids;
}

}  // namespace

// Shared with `bench tokenizer`: a model folder or synthetic:PRESET -> its tokenizer.
std::shared_ptr<const Tokenizer> load_cli_tokenizer(const std::string& model) {
  if (model.rfind("synthetic:", 0) == 0)
    return Tokenizer::from_dir(assets_dir() / "tokenizer/mixtral");
  return Tokenizer::from_dir(model);
}

namespace {

struct TokenizeArgs {
  std::string model, text, decode, jsonl_in;
  bool no_special = false, skip_special = false;
};

int run_tokenize(const TokenizeArgs& a) {
  const auto tok = load_cli_tokenizer(a.model);
  if (!a.decode.empty()) {
    const std::vector<int32_t> ids = parse_ids(a.decode);
    std::printf("%s\n", dump(json{{"text", tok->decode(ids, a.skip_special)}}).c_str());
    return 0;
  }
  if (!a.jsonl_in.empty()) {
    std::ifstream in(a.jsonl_in);
    MIXSERVE_CHECK(in.good(), "--jsonl-in ", a.jsonl_in, ": cannot open");
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (line.empty()) continue;
      json text;
      try {
        text = json::parse(line);
      } catch (const json::exception& e) {
        throw_error("--jsonl-in ", a.jsonl_in, ":", n, ": not JSON (", e.what(), ")");
      }
      MIXSERVE_CHECK(text.is_string(), "--jsonl-in ", a.jsonl_in, ":", n,
                     ": each line must be a JSON string");
      const std::vector<int32_t> ids = tok->encode(text.get<std::string>(), !a.no_special);
      std::cout << dump(json{{"ids", ids},
                             {"decoded", tok->decode(ids, false)},
                             {"decoded_skip_special", tok->decode(ids, true)}})
                << '\n';
    }
    return 0;
  }
  std::printf("%s\n", dump(json{{"ids", tok->encode(a.text, !a.no_special)}}).c_str());
  return 0;
}

const CommandRegistrar kTokenize(
    "tokenize", "Encode text (or decode ids) with a model's tokenizer",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<TokenizeArgs>();
      sub.add_option("--model", a->model, "Model folder with tokenizer.json, or synthetic:PRESET")
          ->required();
      auto* text = sub.add_option("--text", a->text, "Text to encode");
      auto* decode = sub.add_option("--decode", a->decode, "Comma-separated ids to decode");
      auto* jsonl = sub.add_option("--jsonl-in", a->jsonl_in,
                                   "File with one JSON string per line; prints one JSON line each");
      text->excludes(decode)->excludes(jsonl);
      decode->excludes(jsonl);
      sub.add_flag("--no-special", a->no_special, "Do not add BOS/EOS around the text");
      sub.add_flag("--skip-special", a->skip_special, "With --decode: drop special tokens");
      return [a, text, decode, jsonl] {
        MIXSERVE_CHECK(text->count() + decode->count() + jsonl->count() == 1,
                       "tokenize: give one of --text, --decode, --jsonl-in");
        return run_tokenize(*a);
      };
    });

}  // namespace
}  // namespace mixserve::cli
