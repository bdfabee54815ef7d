#include "server/api_service.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <random>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse json_response(int status, const json& j) {
  HttpResponse r;
  r.status = status;
  r.body = dump(j);
  return r;
}

// Compares without an early exit, so the time taken does not reveal how much of a key matched.
bool equal_constant_time(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= uint8_t(a[i]) ^ uint8_t(b[i]);
  return diff == 0;
}

}  // namespace

ApiService::ApiService(ServiceOptions options)
    : options_(std::move(options)), metrics_(options_.served_model_name) {
  id_salt_ = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  created_ = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
}

ApiService::~ApiService() = default;

void ApiService::set_ready(Engine* engine, std::shared_ptr<const Tokenizer> tokenizer) {
  engine_ = engine;
  tokenizer_ = std::move(tokenizer);
  if (tokenizer_ && !tokenizer_->chat_template().empty()) {
    try {
      chat_template_ = std::make_unique<ChatTemplate>(tokenizer_->chat_template());
    } catch (const Error& e) {
      log::warn("the model's chat template cannot be used (", e.what(),
                "); /v1/chat/completions will answer 400");
    }
  }
  ready_.store(true, std::memory_order_release);
}

HttpResponse ApiService::error_response(int status, const std::string& message) {
  const ApiError e(status, message);
  metrics_.count_error(status);
  HttpResponse r;
  r.status = status;
  r.body = error_json(e);
  return r;
}

HttpResponse ApiService::handle(std::string_view method, std::string_view target,
                                std::string_view authorization, std::string_view body,
                                Clock::time_point arrival) {
  const std::string_view path = target.substr(0, target.find('?'));
  try {
    return route(method, path, authorization, body, arrival);
  } catch (const ApiError& e) {
    metrics_.count_error(e.status());
    HttpResponse r;
    r.status = e.status();
    r.body = error_json(e);
    if (e.status() == 429) r.headers.emplace_back("Retry-After", "1");
    return r;
  } catch (const std::exception& e) {
    // A bug or a resource failure; the request fails alone and the server stays up.
    log::error("request ", method, " ", path, " failed: ", e.what());
    return error_response(500, std::string("internal error: ") + e.what());
  }
}

HttpResponse ApiService::route(std::string_view method, std::string_view path,
                               std::string_view authorization, std::string_view body,
                               Clock::time_point arrival) {
  const bool get = method == "GET" || method == "HEAD";
  const bool post = method == "POST";
  if (path == "/health") {
    if (!get) throw ApiError(405, "use GET for " + std::string(path));
    if (!ready_.load(std::memory_order_acquire)) throw ApiError(503, "the model is loading");
    return json_response(200, json::object());
  }
  if (path == "/version") {
    if (!get) throw ApiError(405, "use GET for " + std::string(path));
    return json_response(200, {{"version", MIXSERVE_VERSION}});
  }
  if (path == "/metrics") {
    if (!get) throw ApiError(405, "use GET for " + std::string(path));
    HttpResponse r;
    EngineStats stats;
    const bool ready = ready_.load(std::memory_order_acquire);
    if (ready) stats = engine_->stats();
    r.body = metrics_.render(ready ? &stats : nullptr);
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  }
  const bool known = path == "/v1/models" || path.rfind("/v1/models/", 0) == 0 ||
                     path == "/v1/completions" || path == "/v1/chat/completions" ||
                     path == "/tokenize" || path == "/detokenize";
  if (!known) {
    throw ApiError(404, "no route " + std::string(method) + " " + std::string(path) +
                            " (see docs/server.md for the endpoints)",
                   "", "", "not_found");
  }
  if (!options_.api_key.empty()) {
    constexpr std::string_view kBearer = "Bearer ";
    const bool ok = authorization.substr(0, kBearer.size()) == kBearer &&
                    equal_constant_time(authorization.substr(kBearer.size()), options_.api_key);
    if (!ok) {
      throw ApiError(401, "missing or wrong API key: send the header Authorization: Bearer <key>",
                     "", "", "invalid_api_key");
    }
  }
  if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
    if (!get) throw ApiError(405, "use GET for " + std::string(path));
    // Clients poll the model list to learn that a server is up: list it once it can serve.
    if (!ready_.load(std::memory_order_acquire)) throw ApiError(503, "the model is loading");
    if (path != "/v1/models" && path.substr(11) != options_.served_model_name) {
      throw ApiError(404, "the model '" + std::string(path.substr(11)) + "' does not exist",
                     "model", "", "model_not_found");
    }
    return models();
  }
  if (!post) throw ApiError(405, "use POST for " + std::string(path));
  if (path == "/tokenize") return tokenize(body);
  if (path == "/detokenize") return detokenize(body);
  return generate(path, body, arrival);
}

HttpResponse ApiService::models() const {
  json card = {{"id", options_.served_model_name},
               {"object", "model"},
               {"created", created_},
               {"owned_by", "mixserve"},
               {"root", options_.served_model_name},
               {"parent", nullptr}};
  if (ready_.load(std::memory_order_acquire)) card["max_model_len"] = engine_->max_model_len();
  return json_response(200, {{"object", "list"}, {"data", json::array({card})}});
}

void ApiService::check_model(const std::optional<std::string>& model) const {
  if (model && *model != options_.served_model_name) {
    throw ApiError(404, "the model '" + *model + "' does not exist (this server serves '" +
                            options_.served_model_name + "')",
                   "model", "", "model_not_found");
  }
}

void ApiService::check_ready() const {
  if (!ready_.load(std::memory_order_acquire)) throw ApiError(503, "the model is loading");
  if (draining_.load()) throw ApiError(503, "the server is shutting down");
}

std::string ApiService::apply_chat_template(const std::string& messages_json,
                                            bool add_generation_prompt) const {
  if (!chat_template_) {
    throw ApiError(400, "this model has no usable chat template; use /v1/completions",
                   "messages");
  }
  ChatTemplateOptions opts;
  opts.add_generation_prompt = add_generation_prompt;
  opts.bos_token = tokenizer_->bos_token();
  opts.eos_token = tokenizer_->eos_token();
  try {
    return chat_template_->render(messages_json, opts);
  } catch (const Error& e) {
    throw ApiError(400, std::string("the chat template rejected the messages: ") + e.what(),
                   "messages");
  }
}

HttpResponse ApiService::generate(std::string_view path, std::string_view body,
                                  Clock::time_point arrival) {
  const bool chat = path == "/v1/chat/completions";
  ApiRequest req = chat ? parse_chat_request(body) : parse_completion_request(body);
  check_model(req.model);
  check_ready();

  // Overload: refuse rather than queue without bound.
  const EngineStats stats = engine_->stats();
  const int64_t limit = int64_t(engine_->config().max_num_seqs) + options_.max_queued_requests;
  if (stats.num_waiting >= options_.max_queued_requests || in_flight_.load() >= limit) {
    throw ApiError(429, "too many requests are waiting (--max-queued-requests " +
                            std::to_string(options_.max_queued_requests) + "); retry later",
                   "", "", "rate_limit_exceeded");
  }

  // Prompts as token ids.
  std::vector<PromptRun> runs;
  if (chat) {
    const std::string text = apply_chat_template(req.messages_json, req.add_generation_prompt);
    runs.push_back({nullptr, tokenizer_->encode(text, /*add_special_tokens=*/false), ""});
  } else {
    for (PromptInput& p : req.prompts) {
      PromptRun run;
      if (p.text) {
        if (!tokenizer_) throw ApiError(400, "this model has no tokenizer: send token ids", "prompt");
        run.prompt_ids = tokenizer_->encode(*p.text, true);
        if (req.echo) run.echo_text = std::move(*p.text);
      } else {
        run.prompt_ids = std::move(p.ids);
        // (Without a tokenizer the engine checks the ids against the model's vocabulary.)
        const int32_t vocab = tokenizer_ ? tokenizer_->vocab_size() : INT32_MAX;
        for (int32_t id : run.prompt_ids) {
          if (id >= vocab) {
            throw ApiError(400, "prompt token id " + std::to_string(id) +
                                    " is outside the vocabulary [0, " + std::to_string(vocab) + ")",
                           "prompt");
          }
        }
        if (req.echo && tokenizer_) run.echo_text = tokenizer_->decode(run.prompt_ids, false);
      }
      runs.push_back(std::move(run));
    }
  }

  // The context limit, with OpenAI's wording.
  const int64_t max_len = engine_->max_model_len();
  for (const PromptRun& run : runs) {
    const int64_t plen = int64_t(run.prompt_ids.size());
    if (plen == 0) throw ApiError(400, "the prompt is empty", chat ? "messages" : "prompt");
    const int64_t want = plen + req.params.max_tokens.value_or(1);
    if (plen >= max_len || want > max_len) {
      throw ApiError(400,
                     "This model's maximum context length is " + std::to_string(max_len) +
                         " tokens. However, you requested " + std::to_string(want) + " tokens (" +
                         std::to_string(plen) + " in the " + (chat ? "messages" : "prompt") +
                         ", " + std::to_string(want - plen) +
                         " in the completion). Please reduce the length of the " +
                         (chat ? "messages" : "prompt") + " or completion.",
                     plen >= max_len ? (chat ? "messages" : "prompt") : "max_tokens", "",
                     "context_length_exceeded");
    }
  }

  char id_buf[40];
  const uint64_t serial = next_id_.fetch_add(1);
  std::snprintf(id_buf, sizeof(id_buf), "%s-%016llx%08llx", chat ? "chatcmpl" : "cmpl",
                (unsigned long long)id_salt_, (unsigned long long)serial);
  const std::string id = id_buf;

  in_flight_.fetch_add(1);
  auto release = [this] { in_flight_.fetch_sub(1); };
  try {
    for (size_t i = 0; i < runs.size(); ++i) {
      Request r;
      r.id = runs.size() == 1 ? id : id + "-" + std::to_string(i);
      r.prompt_ids = runs[i].prompt_ids;
      r.params = req.params;
      r.arrival = arrival;
      runs[i].stream = engine_->submit(std::move(r));
    }
  } catch (const Error& e) {
    for (PromptRun& run : runs) {
      if (run.stream) run.stream->cancel();
    }
    release();
    throw ApiError(draining_.load() ? 503 : 400, e.what());
  }

  ResponseFormatter fmt(req.kind, id,
                        std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count(),
                        options_.served_model_name, tokenizer_.get(), req.params.logprobs >= 0,
                        req.include_usage);
  JobOptions jo;
  jo.stream = req.stream;
  jo.include_usage = req.include_usage;
  jo.echo = req.echo;
  jo.n = req.params.n;
  HttpResponse resp;
  resp.job = std::make_shared<CompletionJob>(std::move(fmt), std::move(runs), jo, &metrics_,
                                             arrival, release);
  if (req.stream) resp.content_type = "text/event-stream";
  return resp;
}

HttpResponse ApiService::tokenize(std::string_view body) {
  TokenizeRequest req = parse_tokenize_request(body);
  check_model(req.model);
  check_ready();
  if (!tokenizer_) throw ApiError(400, "this model has no tokenizer");
  std::string text = req.prompt ? *req.prompt
                                : apply_chat_template(req.messages_json, req.add_generation_prompt);
  const std::vector<int32_t> ids = tokenizer_->encode(text, req.add_special_tokens);
  return json_response(200, {{"count", ids.size()},
                             {"max_model_len", engine_->max_model_len()},
                             {"tokens", ids}});
}

HttpResponse ApiService::detokenize(std::string_view body) {
  DetokenizeRequest req = parse_detokenize_request(body);
  check_model(req.model);
  check_ready();
  if (!tokenizer_) throw ApiError(400, "this model has no tokenizer");
  for (int32_t id : req.tokens) {
    if (id >= tokenizer_->vocab_size()) {
      throw ApiError(400, "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                              std::to_string(tokenizer_->vocab_size()) + ")",
                     "tokens");
    }
  }
  return json_response(200, {{"prompt", tokenizer_->decode(req.tokens, false)}});
}

}  // namespace mixserve::server
