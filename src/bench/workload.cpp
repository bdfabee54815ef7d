#include "bench/workload.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <unordered_set>

#include "util/error.h"

namespace mixserve::bench {
namespace {

double parse_number(const std::string& text, const std::string& flag, const std::string& whole) {
  size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MIXSERVE_CHECK(used == text.size() && !text.empty() && std::isfinite(v), flag, " '", whole,
                 "': '", text, "' is not a number (expected N, normal:MEAN:STDDEV or "
                 "uniform:MIN:MAX)");
  return v;
}

int32_t draw(const LengthSpec& spec, std::mt19937_64& rng) {
  double v = spec.a;
  if (spec.kind == LengthSpec::Kind::kNormal) {
    v = std::normal_distribution<double>(spec.a, spec.b)(rng);
  } else if (spec.kind == LengthSpec::Kind::kUniform) {
    v = double(std::uniform_int_distribution<int64_t>(int64_t(std::ceil(spec.a)),
                                                        int64_t(std::floor(spec.b)))(rng));
  }
  return int32_t(std::max(1.0, std::round(v)));
}

std::vector<int32_t> random_ids(int32_t n, const std::vector<int32_t>& allowed,
                                std::mt19937_64& rng) {
  std::uniform_int_distribution<size_t> pick(0, allowed.size() - 1);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& id : ids) id = allowed[pick(rng)];
  return ids;
}

std::string random_text(int32_t words, std::mt19937_64& rng) {
  const auto& list = prompt_words();
  std::uniform_int_distribution<size_t> pick(0, list.size() - 1);
  std::string text;
  for (int32_t i = 0; i < words; ++i) {
    if (i > 0) text += ' ';
    text += list[pick(rng)];
  }
  return text;
}

std::vector<WorkloadItem> read_dataset(const WorkloadSpec& spec, std::mt19937_64& rng) {
  std::ifstream in(spec.dataset);
  MIXSERVE_CHECK(in.good(), "--dataset ", spec.dataset.string(), ": cannot open the file");
  std::vector<WorkloadItem> lines;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = spec.dataset.string() + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw_error(where, ": not a JSON object (", e.what(), ")");
    }
    MIXSERVE_CHECK(j.is_object(), where, ": each line must be a JSON object");
    WorkloadItem item;
    const nlohmann::json* prompt = nullptr;
    if (j.contains("prompt_token_ids")) prompt = &j["prompt_token_ids"];
    else if (j.contains("prompt")) prompt = &j["prompt"];
    MIXSERVE_CHECK(prompt != nullptr, where, ": needs \"prompt\" (text or ids) or "
                                             "\"prompt_token_ids\"");
    if (prompt->is_string()) {
      item.prompt_text = prompt->get<std::string>();
      MIXSERVE_CHECK(!item.prompt_text.empty(), where, ": empty prompt");
      item.input_len = 0;  // unknown without a tokenizer; the caller or the server counts
    } else {
      MIXSERVE_CHECK(prompt->is_array() && !prompt->empty(), where,
                     ": the prompt must be a string or a non-empty array of token ids");
      for (const auto& id : *prompt) {
        MIXSERVE_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0, where,
                       ": token ids must be non-negative integers");
        item.prompt_ids.push_back(id.get<int32_t>());
      }
      item.input_len = int32_t(item.prompt_ids.size());
    }
    const char* out_key = j.contains("output_len") ? "output_len"
                          : j.contains("max_tokens") ? "max_tokens" : nullptr;
    if (out_key != nullptr) {
      MIXSERVE_CHECK(j[out_key].is_number_integer() && j[out_key].get<int64_t>() >= 1, where,
                     ": \"", out_key, "\" must be a positive integer");
      item.output_len = j[out_key].get<int32_t>();
    } else {
      item.output_len = draw(spec.output, rng);
    }
    lines.push_back(std::move(item));
  }
  MIXSERVE_CHECK(!lines.empty(), "--dataset ", spec.dataset.string(), ": no requests in it");
  return lines;
}

}  // namespace

LengthSpec LengthSpec::parse(const std::string& text, const std::string& flag) {
  LengthSpec s;
  const size_t colon = text.find(':');
  if (colon == std::string::npos) {
    s.a = parse_number(text, flag, text);
    MIXSERVE_CHECK(s.a >= 1.0, flag, " ", text, ": a length must be at least 1");
    return s;
  }
  const std::string kind = text.substr(0, colon);
  const std::string rest = text.substr(colon + 1);
  const size_t colon2 = rest.find(':');
  MIXSERVE_CHECK(colon2 != std::string::npos, flag, " '", text,
                 "': expected normal:MEAN:STDDEV or uniform:MIN:MAX");
  s.a = parse_number(rest.substr(0, colon2), flag, text);
  s.b = parse_number(rest.substr(colon2 + 1), flag, text);
  if (kind == "normal") {
    s.kind = Kind::kNormal;
    MIXSERVE_CHECK(s.a >= 1.0 && s.b >= 0.0, flag, " '", text,
                   "': the mean must be >= 1 and the standard deviation >= 0");
  } else if (kind == "uniform") {
    s.kind = Kind::kUniform;
    MIXSERVE_CHECK(s.a >= 1.0 && std::floor(s.b) >= std::ceil(s.a), flag, " '", text,
                   "': needs 1 <= MIN <= MAX with a whole number between them");
  } else {
    throw_error(flag, " '", text, "': unknown distribution '", kind,
                "' (use a number, normal:MEAN:STDDEV or uniform:MIN:MAX)");
  }
  return s;
}

std::string LengthSpec::to_string() const {
  std::ostringstream os;
  if (kind == Kind::kFixed) os << a;
  else if (kind == Kind::kNormal) os << "normal:" << a << ":" << b;
  else os << "uniform:" << a << ":" << b;
  return os.str();
}

std::vector<WorkloadItem> make_workload(const WorkloadSpec& spec) {
  MIXSERVE_CHECK(spec.num_requests >= 1, "--num-requests must be at least 1");
  std::mt19937_64 rng(spec.seed);
  std::vector<WorkloadItem> items;
  items.reserve(size_t(spec.num_requests));
  if (!spec.dataset.empty()) {
    const std::vector<WorkloadItem> lines = read_dataset(spec, rng);
    for (int64_t i = 0; i < spec.num_requests; ++i) items.push_back(lines[size_t(i) % lines.size()]);
    return items;
  }
  std::vector<int32_t> allowed;
  if (spec.prompt_kind == PromptKind::kTokens) {
    MIXSERVE_CHECK(spec.vocab_size >= 1, "vocabulary size ", spec.vocab_size, " must be >= 1");
    const std::unordered_set<int32_t> avoid(spec.avoid_ids.begin(), spec.avoid_ids.end());
    for (int32_t id = 0; id < spec.vocab_size; ++id)
      if (!avoid.count(id)) allowed.push_back(id);
    MIXSERVE_CHECK(!allowed.empty(), "no token ids left to draw prompts from: the vocabulary of ",
                   spec.vocab_size, " ids is all special");
  }
  for (int64_t i = 0; i < spec.num_requests; ++i) {
    WorkloadItem item;
    item.input_len = draw(spec.input, rng);
    item.output_len = draw(spec.output, rng);
    if (spec.prompt_kind == PromptKind::kTokens) item.prompt_ids = random_ids(item.input_len, allowed, rng);
    else item.prompt_text = random_text(item.input_len, rng);
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<int32_t> default_avoid_ids(int32_t bos_id, const std::vector<int32_t>& eos_ids) {
  std::vector<int32_t> ids = {0, 1, 2};
  if (bos_id >= 0) ids.push_back(bos_id);
  ids.insert(ids.end(), eos_ids.begin(), eos_ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

const std::vector<std::string>& prompt_words() {
  // Short, common English words: each is one token (with its leading space) in the Llama and
  // Mistral vocabularies, so N words make a prompt of about N tokens.
  static const std::vector<std::string> kWords = {
      "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
      "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but",
      "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her",
      "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no",
      "time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child",
      "world", "school", "state", "family", "student", "group", "country", "problem", "hand",
      "part", "place", "case", "week", "company", "system", "program", "question", "work",
      "number", "night", "point", "home", "water", "room", "mother", "area", "money", "story",
      "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business",
      "side", "kind", "head", "house", "service", "friend", "father", "power", "hour", "game",
      "line", "end", "member", "law", "car", "city", "name", "team", "minute", "idea", "kid",
      "body", "back", "face", "level", "office", "door", "health", "person", "art", "war",
      "history", "party", "result", "change", "morning", "reason", "research", "girl", "guy",
      "moment", "air", "teacher", "force", "education", "good", "new", "first", "last",
      "long", "great", "little", "own", "other", "old", "big", "high", "different", "small",
      "large", "next", "early", "young", "important", "few", "public", "bad", "same", "able"};
  return kWords;
}

std::vector<WorkloadItem> with_fresh_prefixes(const std::vector<WorkloadItem>& items, int run,
                                              int32_t vocab_size) {
  MIXSERVE_CHECK(vocab_size > 4, "--vocab-size ", vocab_size, " leaves no ordinary token ids");
  std::vector<WorkloadItem> out = items;
  const int64_t span = vocab_size - 3;  // ids 0..2 are <unk>, <s>, </s>
  for (WorkloadItem& it : out) {
    if (!it.prompt_ids.empty()) {
      const int64_t first = it.prompt_ids[0];
      int64_t moved = 3 + ((first - 3) % span + span + int64_t{run} * 7919) % span;
      if (moved == first) moved = 3 + (moved - 3 + 1) % span;
      it.prompt_ids[0] = static_cast<int32_t>(moved);
    } else {
      it.prompt_text = "[run " + std::to_string(run) + "] " + it.prompt_text;
    }
  }
  return out;
}

}  // namespace mixserve::bench
