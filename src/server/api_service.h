// ApiService: the OpenAI-compatible API without the sockets. handle() takes a parsed HTTP
// request and returns either a complete response or a CompletionJob that produces one as the
// engine works; the HTTP layer (http_server.cpp) only moves bytes. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "server/completion_job.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace mixserve {
class ChatTemplate;
}

namespace mixserve::server {

struct ServiceOptions {
  std::string served_model_name;  // what clients pass as "model"
  std::string api_key;            // "" = no authentication
  int32_t max_queued_requests = 4096;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::shared_ptr<CompletionJob> job;  // set: the body (or the event stream) comes from it
};

class ApiService {
 public:
  explicit ApiService(ServiceOptions options);
  ~ApiService();
  ApiService(const ApiService&) = delete;
  ApiService& operator=(const ApiService&) = delete;

  // The model is loaded: /health turns 200 and generation requests are served. The engine
  // must outlive every job (shut the HTTP server down before the engine is destroyed).
  void set_ready(Engine* engine, std::shared_ptr<const Tokenizer> tokenizer);
  // Shutting down: new generation requests get 503; running ones go on.
  void set_draining() { draining_.store(true); }

  HttpResponse handle(std::string_view method, std::string_view target,
                      std::string_view authorization, std::string_view body,
                      std::chrono::steady_clock::time_point arrival =
                          std::chrono::steady_clock::now());
  // An error response (also for errors the HTTP layer finds: 413, 431, 400), counted.
  HttpResponse error_response(int status, const std::string& message);

  int64_t requests_in_flight() const { return in_flight_.load(); }
  ServerMetrics& metrics() { return metrics_; }

 private:
  HttpResponse route(std::string_view method, std::string_view path,
                     std::string_view authorization, std::string_view body,
                     std::chrono::steady_clock::time_point arrival);
  HttpResponse generate(std::string_view path, std::string_view body,
                        std::chrono::steady_clock::time_point arrival);
  HttpResponse tokenize(std::string_view body);
  HttpResponse detokenize(std::string_view body);
  HttpResponse models() const;
  void check_model(const std::optional<std::string>& model) const;
  void check_ready() const;
  std::string apply_chat_template(const std::string& messages_json,
                                  bool add_generation_prompt) const;

  ServiceOptions options_;
  ServerMetrics metrics_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> next_id_{0};
  uint64_t id_salt_ = 0;
  int64_t created_ = 0;
  // Written once by set_ready before ready_ is released.
  Engine* engine_ = nullptr;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> chat_template_;
};

}  // namespace mixserve::server
