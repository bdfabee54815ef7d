#include "server/openai_request.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

#include "server/api_error.h"
#include "util/error.h"

namespace mixserve::server {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

json parse_object(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    bad("", "the request body is not valid JSON (check quoting, commas and UTF-8)");
  }
  if (!j.is_object()) bad("", "the request body must be a JSON object");
  return j;
}

// A field that is absent or null counts as not given, as in OpenAI's API.
const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string type_name(const json& v) { return v.type_name(); }

int64_t as_int(const json& v, const char* name, int64_t lo, int64_t hi) {
  int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      bad(name, std::string(name) + " is too large");
    x = v.get<int64_t>();
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9e15)
      bad(name, std::string(name) + " must be an integer, got " + v.dump());
    x = int64_t(d);
  } else {
    bad(name, std::string(name) + " must be an integer, got " + type_name(v));
  }
  if (x < lo || x > hi) {
    bad(name, std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "], got " + std::to_string(x));
  }
  return x;
}

float as_float(const json& v, const char* name) {
  if (!v.is_number()) bad(name, std::string(name) + " must be a number, got " + type_name(v));
  const double d = v.get<double>();
  if (!std::isfinite(d) || std::fabs(d) > 1e30) {
    bad(name, std::string(name) + " must be a finite number, got " + v.dump());
  }
  return float(d);
}

bool as_bool(const json& v, const char* name) {
  if (!v.is_boolean()) bad(name, std::string(name) + " must be a boolean, got " + type_name(v));
  return v.get<bool>();
}

std::string as_string(const json& v, const char* name) {
  if (!v.is_string()) bad(name, std::string(name) + " must be a string, got " + type_name(v));
  return v.get<std::string>();
}

std::vector<int32_t> as_ids(const json& v, const char* name) {
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const json& t : v) {
    if (!t.is_number_integer()) bad(name, std::string(name) + " token ids must be integers");
    ids.push_back(int32_t(as_int(t, name, 0, std::numeric_limits<int32_t>::max())));
  }
  return ids;
}

// prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...]
std::vector<PromptInput> parse_prompts(const json& j) {
  const json* p = field(j, "prompt");
  if (p == nullptr) bad("prompt", "prompt is required");
  std::vector<PromptInput> out;
  if (p->is_string()) {
    out.push_back({p->get<std::string>(), {}});
    return out;
  }
  if (!p->is_array()) bad("prompt", "prompt must be a string, an array of strings, an array of "
                                    "token ids or an array of token-id arrays");
  if (p->empty()) bad("prompt", "prompt must not be empty");
  if ((*p)[0].is_number()) {
    out.push_back({std::nullopt, as_ids(*p, "prompt")});
    return out;
  }
  for (const json& e : *p) {
    if (e.is_string()) {
      out.push_back({e.get<std::string>(), {}});
    } else if (e.is_array()) {
      if (e.empty()) bad("prompt", "prompt token-id arrays must not be empty");
      out.push_back({std::nullopt, as_ids(e, "prompt")});
    } else {
      bad("prompt", "prompt arrays must hold only strings or only token-id arrays");
    }
  }
  if (out.size() > 1024) bad("prompt", "at most 1024 prompts per request");
  return out;
}

// The content of a chat message: a string, null, or an array of {"type":"text","text":…}
// parts (joined with newlines, as vLLM does).
json message_content(const json& c, size_t index) {
  const std::string name = "messages[" + std::to_string(index) + "].content";
  if (c.is_null() || c.is_string()) return c;
  if (!c.is_array()) bad(name, name + " must be a string, null or an array of text parts");
  std::string text;
  for (size_t i = 0; i < c.size(); ++i) {
    const json& part = c[i];
    const json* type = part.is_object() ? field(part, "type") : nullptr;
    const json* t = part.is_object() ? field(part, "text") : nullptr;
    if (type == nullptr || !type->is_string() || *type != "text" || t == nullptr ||
        !t->is_string()) {
      bad(name, name + "[" + std::to_string(i) +
                    "] must be {\"type\": \"text\", \"text\": string} (only text is supported)");
    }
    if (i > 0) text += "\n";
    text += t->get<std::string>();
  }
  return text;
}

std::string parse_messages(const json& j) {
  const json* m = field(j, "messages");
  if (m == nullptr) bad("messages", "messages is required");
  if (!m->is_array() || m->empty()) bad("messages", "messages must be a non-empty array");
  json out = json::array();
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    const std::string name = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) bad(name, name + " must be an object");
    const json* role = field(msg, "role");
    if (role == nullptr || !role->is_string()) bad(name + ".role", name + ".role must be a string");
    json o = {{"role", *role}};
    auto c = msg.find("content");
    o["content"] = c == msg.end() ? json(nullptr) : message_content(*c, i);
    if (const json* n = field(msg, "name"); n != nullptr && n->is_string()) o["name"] = *n;
    out.push_back(std::move(o));
  }
  return out.dump();
}

std::vector<std::string> parse_stop(const json& v) {
  if (v.is_string()) return {v.get<std::string>()};
  if (!v.is_array()) bad("stop", "stop must be a string or an array of strings");
  std::vector<std::string> out;
  for (const json& s : v) {
    if (!s.is_string()) bad("stop", "stop must be a string or an array of strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

// Fields shared by both endpoints.
void parse_common(const json& j, ApiRequest& r) {
  SamplingParams& p = r.params;
  if (const json* v = field(j, "model")) r.model = as_string(*v, "model");
  if (const json* v = field(j, "temperature")) p.temperature = as_float(*v, "temperature");
  if (const json* v = field(j, "top_p")) p.top_p = as_float(*v, "top_p");
  if (const json* v = field(j, "n")) p.n = int32_t(as_int(*v, "n", 1, SamplingParams::kMaxN));
  if (const json* v = field(j, "stop")) p.stop = parse_stop(*v);
  if (const json* v = field(j, "seed")) {
    p.seed = uint64_t(as_int(*v, "seed", std::numeric_limits<int64_t>::min(),
                             std::numeric_limits<int64_t>::max()));
  }
  if (const json* v = field(j, "presence_penalty"))
    p.presence_penalty = as_float(*v, "presence_penalty");
  if (const json* v = field(j, "frequency_penalty"))
    p.frequency_penalty = as_float(*v, "frequency_penalty");
  if (const json* v = field(j, "top_k")) p.top_k = int32_t(as_int(*v, "top_k", -1, kMaxInt32));
  if (const json* v = field(j, "min_p")) p.min_p = as_float(*v, "min_p");
  if (const json* v = field(j, "repetition_penalty"))
    p.repetition_penalty = as_float(*v, "repetition_penalty");
  if (const json* v = field(j, "ignore_eos")) p.ignore_eos = as_bool(*v, "ignore_eos");
  if (const json* v = field(j, "min_tokens"))
    p.min_tokens = int32_t(as_int(*v, "min_tokens", 0, kMaxInt32));
  if (const json* v = field(j, "skip_special_tokens"))
    p.skip_special_tokens = as_bool(*v, "skip_special_tokens");
  if (const json* v = field(j, "stop_token_ids")) {
    if (!v->is_array()) bad("stop_token_ids", "stop_token_ids must be an array of token ids");
    p.stop_token_ids = as_ids(*v, "stop_token_ids");
  }
  if (const json* v = field(j, "stream")) r.stream = as_bool(*v, "stream");
  if (const json* v = field(j, "stream_options")) {
    if (!v->is_object()) bad("stream_options", "stream_options must be an object");
    if (!r.stream) bad("stream_options", "stream_options is only allowed when stream is true");
    if (const json* u = field(*v, "include_usage"))
      r.include_usage = as_bool(*u, "stream_options.include_usage");
  }
  if (const json* v = field(j, "user")) r.user = as_string(*v, "user");
}

}  // namespace

ApiRequest parse_completion_request(std::string_view body) {
  const json j = parse_object(body);
  ApiRequest r;
  r.kind = ApiKind::kCompletion;
  r.prompts = parse_prompts(j);
  parse_common(j, r);
  if (const json* v = field(j, "max_tokens"))
    r.params.max_tokens = int32_t(as_int(*v, "max_tokens", 1, kMaxInt32));
  if (const json* v = field(j, "logprobs")) {
    r.params.logprobs = int32_t(as_int(*v, "logprobs", 0, SamplingParams::kMaxLogprobs));
  }
  if (const json* v = field(j, "echo")) r.echo = as_bool(*v, "echo");
  validate_params(r.params);
  return r;
}

ApiRequest parse_chat_request(std::string_view body) {
  const json j = parse_object(body);
  ApiRequest r;
  r.kind = ApiKind::kChat;
  r.messages_json = parse_messages(j);
  parse_common(j, r);
  // max_completion_tokens replaces the deprecated max_tokens; it wins when both are given.
  if (const json* v = field(j, "max_tokens"))
    r.params.max_tokens = int32_t(as_int(*v, "max_tokens", 1, kMaxInt32));
  if (const json* v = field(j, "max_completion_tokens"))
    r.params.max_tokens = int32_t(as_int(*v, "max_completion_tokens", 1, kMaxInt32));
  bool logprobs = false;
  if (const json* v = field(j, "logprobs")) logprobs = as_bool(*v, "logprobs");
  if (const json* v = field(j, "top_logprobs")) {
    const int32_t k = int32_t(as_int(*v, "top_logprobs", 0, SamplingParams::kMaxLogprobs));
    if (!logprobs) bad("top_logprobs", "top_logprobs requires logprobs to be true");
    r.params.logprobs = k;
  } else if (logprobs) {
    r.params.logprobs = 0;
  }
  if (const json* v = field(j, "add_generation_prompt"))
    r.add_generation_prompt = as_bool(*v, "add_generation_prompt");
  validate_params(r.params);
  return r;
}

void validate_params(const SamplingParams& params) {
  try {
    params.validate();
  } catch (const Error& e) {
    // validate()'s messages start with the parameter's name ("top_p must be in (0, 1], …").
    const std::string msg = e.what();
    const std::string param = msg.substr(0, msg.find(' '));
    throw ApiError(400, msg, param);
  }
}

TokenizeRequest parse_tokenize_request(std::string_view body) {
  const json j = parse_object(body);
  TokenizeRequest r;
  if (const json* v = field(j, "model")) r.model = as_string(*v, "model");
  if (const json* v = field(j, "prompt")) {
    r.prompt = as_string(*v, "prompt");
  } else if (field(j, "messages") != nullptr) {
    r.messages_json = parse_messages(j);
    r.add_special_tokens = false;  // the chat template writes the special tokens itself
  } else {
    bad("prompt", "prompt (a string) or messages is required");
  }
  if (const json* v = field(j, "add_special_tokens"))
    r.add_special_tokens = as_bool(*v, "add_special_tokens");
  if (const json* v = field(j, "add_generation_prompt"))
    r.add_generation_prompt = as_bool(*v, "add_generation_prompt");
  return r;
}

DetokenizeRequest parse_detokenize_request(std::string_view body) {
  const json j = parse_object(body);
  DetokenizeRequest r;
  if (const json* v = field(j, "model")) r.model = as_string(*v, "model");
  const json* t = field(j, "tokens");
  if (t == nullptr || !t->is_array()) bad("tokens", "tokens (an array of token ids) is required");
  r.tokens = as_ids(*t, "tokens");
  return r;
}

}  // namespace mixserve::server
