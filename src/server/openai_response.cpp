#include "server/openai_response.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace mixserve::server {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// JSON has no -inf; vLLM clamps the same way.
double finite_logprob(float lp) { return std::isfinite(lp) ? double(lp) : -9999.0; }

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

json usage_json(const UsageTotals& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_prompt_tokens}}}};
}

}  // namespace

std::string token_text(const Tokenizer* tokenizer, int32_t id) {
  if (tokenizer == nullptr || id < 0 || id >= tokenizer->vocab_size()) {
    return "token_id:" + std::to_string(id);
  }
  const std::string_view piece = tokenizer->id_to_piece(id);
  if (tokenizer->is_special(id)) return std::string(piece);
  // Byte-fallback token "<0xNN>".
  if (piece.size() == 6 && piece.substr(0, 3) == "<0x" && piece[5] == '>') {
    return std::string(1, char(std::stoi(std::string(piece.substr(3, 2)), nullptr, 16)));
  }
  std::string out;
  static constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581
  for (size_t i = 0; i < piece.size();) {
    if (piece.substr(i, 3) == kSpace) {
      out += ' ';
      i += 3;
    } else {
      out += piece[i++];
    }
  }
  return out;
}

ResponseFormatter::ResponseFormatter(ApiKind kind, std::string id, int64_t created,
                                     std::string model, const Tokenizer* tokenizer,
                                     bool logprobs, bool include_usage)
    : kind_(kind), id_(std::move(id)), model_(std::move(model)), created_(created),
      tokenizer_(tokenizer), logprobs_(logprobs), include_usage_(include_usage) {}

namespace {

// OpenAI's legacy completions object: {tokens, token_logprobs, top_logprobs, text_offset}.
json legacy_logprobs(const Tokenizer* tok, std::span<const int32_t> echo_ids,
                     std::span<const TokenLogprobs> lps, int32_t& text_offset) {
  json tokens = json::array(), token_lps = json::array(), tops = json::array(),
       offsets = json::array();
  for (int32_t id : echo_ids) {
    const std::string t = token_text(tok, id);
    tokens.push_back(t);
    token_lps.push_back(nullptr);
    tops.push_back(nullptr);
    offsets.push_back(text_offset);
    text_offset += int32_t(t.size());
  }
  for (const TokenLogprobs& lp : lps) {
    const std::string t = token_text(tok, lp.id);
    tokens.push_back(t);
    token_lps.push_back(finite_logprob(lp.logprob));
    json top = json::object();
    for (const TopLogprob& c : lp.top) top[token_text(tok, c.id)] = finite_logprob(c.logprob);
    tops.push_back(lp.top.empty() ? json(nullptr) : top);
    offsets.push_back(text_offset);
    text_offset += int32_t(t.size());
  }
  return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops},
          {"text_offset", offsets}};
}

// Chat's {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
json chat_logprobs(const Tokenizer* tok, std::span<const TokenLogprobs> lps) {
  json content = json::array();
  for (const TokenLogprobs& lp : lps) {
    const std::string t = token_text(tok, lp.id);
    json top = json::array();
    for (const TopLogprob& c : lp.top) {
      const std::string ct = token_text(tok, c.id);
      top.push_back({{"token", ct}, {"logprob", finite_logprob(c.logprob)}, {"bytes", bytes_of(ct)}});
    }
    content.push_back({{"token", t}, {"logprob", finite_logprob(lp.logprob)},
                       {"bytes", bytes_of(t)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

}  // namespace

std::string ResponseFormatter::chunk(int32_t index, std::string_view text,
                                     std::span<const TokenLogprobs> logprobs,
                                     std::span<const int32_t> echo_ids, ChoiceState& state,
                                     bool role, std::span<const int32_t> token_ids) const {
  json choice = {{"index", index}};
  if (kind_ == ApiKind::kCompletion) {
    choice["text"] = std::string(text);
    choice["logprobs"] = logprobs_ ? legacy_logprobs(tokenizer_, echo_ids, logprobs,
                                                     state.text_offset)
                                   : json(nullptr);
  } else {
    json delta = json::object();
    if (role) delta["role"] = "assistant";
    delta["content"] = std::string(text);
    choice["delta"] = delta;
    choice["logprobs"] = logprobs_ ? chat_logprobs(tokenizer_, logprobs) : json(nullptr);
  }
  if (tokenizer_ == nullptr && !token_ids.empty()) {
    choice["token_ids"] = std::vector<int32_t>(token_ids.begin(), token_ids.end());
  }
  choice["finish_reason"] = nullptr;
  json j = {{"id", id_},
            {"object", kind_ == ApiKind::kCompletion ? "text_completion" : "chat.completion.chunk"},
            {"created", created_},
            {"model", model_},
            {"choices", json::array({choice})}};
  if (include_usage_) j["usage"] = nullptr;
  return "data: " + dump(j) + "\n\n";
}

std::string ResponseFormatter::finish_chunk(int32_t index, const std::string& reason) const {
  json choice = {{"index", index}};
  if (kind_ == ApiKind::kCompletion) {
    choice["text"] = "";
  } else {
    choice["delta"] = json::object();
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = reason;
  json j = {{"id", id_},
            {"object", kind_ == ApiKind::kCompletion ? "text_completion" : "chat.completion.chunk"},
            {"created", created_},
            {"model", model_},
            {"choices", json::array({choice})}};
  if (include_usage_) j["usage"] = nullptr;
  return "data: " + dump(j) + "\n\n";
}

std::string ResponseFormatter::usage_chunk(const UsageTotals& usage) const {
  json j = {{"id", id_},
            {"object", kind_ == ApiKind::kCompletion ? "text_completion" : "chat.completion.chunk"},
            {"created", created_},
            {"model", model_},
            {"choices", json::array()},
            {"usage", usage_json(usage)}};
  return "data: " + dump(j) + "\n\n";
}

std::string ResponseFormatter::full_response(std::vector<ChoiceState>& choices,
                                             const std::vector<std::span<const int32_t>>& echo_ids,
                                             const UsageTotals& usage) const {
  json out = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    ChoiceState& c = choices[i];
    json choice = {{"index", i}};
    if (kind_ == ApiKind::kCompletion) {
      choice["text"] = c.text;
      c.text_offset = 0;
      choice["logprobs"] = logprobs_ ? legacy_logprobs(tokenizer_, echo_ids[i], c.logprobs,
                                                       c.text_offset)
                                     : json(nullptr);
    } else {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = logprobs_ ? chat_logprobs(tokenizer_, c.logprobs) : json(nullptr);
    }
    choice["finish_reason"] = c.finish_reason ? json(*c.finish_reason) : json(nullptr);
    out.push_back(std::move(choice));
  }
  json j = {{"id", id_},
            {"object", kind_ == ApiKind::kCompletion ? "text_completion" : "chat.completion"},
            {"created", created_},
            {"model", model_},
            {"choices", out},
            {"usage", usage_json(usage)}};
  return dump(j);
}

std::string error_json(const ApiError& e) {
  json j = {{"error",
             {{"message", e.what()},
              {"type", e.type()},
              {"param", e.param().empty() ? json(nullptr) : json(e.param())},
              {"code", e.code().empty() ? json(e.status()) : json(e.code())}}}};
  return dump(j);
}

std::string error_event(const ApiError& e) { return "data: " + error_json(e) + "\n\n"; }

std::string json_escape_string(std::string_view s) { return dump(json(std::string(s))); }

}  // namespace mixserve::server
