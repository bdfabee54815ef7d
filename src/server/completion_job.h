// CompletionJob: the response to one completion or chat request while the engine works on it.
//
// It owns the request's TokenStreams (one per prompt) and turns their events into what goes
// on the wire: SSE chunks as they come when streaming, else one JSON body at the end. poll()
// runs on a server thread (never the engine's), so JSON encoding stays off the engine loop.
// Not thread-safe: one caller at a time (the connection's strand); cancel() is safe anywhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/token_stream.h"
#include "server/openai_response.h"

namespace mixserve::server {

class ServerMetrics;

struct PromptRun {
  std::shared_ptr<TokenStream> stream;
  std::vector<int32_t> prompt_ids;
  std::string echo_text;  // the prompt as text, when echo is on
};

struct JobOptions {
  bool stream = false;
  bool include_usage = false;
  bool echo = false;
  int32_t n = 1;
};

class CompletionJob {
 public:
  // on_destroy runs when the job goes away (the server counts requests in flight with it).
  CompletionJob(ResponseFormatter formatter, std::vector<PromptRun> prompts, JobOptions options,
                ServerMetrics* metrics, std::chrono::steady_clock::time_point arrival,
                std::function<void()> on_destroy);
  ~CompletionJob();
  CompletionJob(const CompletionJob&) = delete;
  CompletionJob& operator=(const CompletionJob&) = delete;

  bool streaming() const { return options_.stream; }
  // Takes every event available now. Streaming: the SSE bytes to send (the last call that
  // finishes the job ends with "data: [DONE]"). Otherwise "" until done(), then the body.
  std::string poll();
  bool done() const { return done_; }
  int status() const { return status_; }  // of a non-streaming response, once done()

  // Called after each engine event (on the engine thread): schedule a poll(), nothing more.
  void set_listener(const std::function<void()>& listener);
  // The client went away: the engine stops the request at its next step.
  void cancel();

 private:
  void on_event(size_t prompt_index, StreamEvent& ev, std::string& out);
  void finish(std::string& out);

  ResponseFormatter fmt_;
  std::vector<PromptRun> prompts_;
  JobOptions options_;
  ServerMetrics* metrics_;
  std::chrono::steady_clock::time_point arrival_;
  std::function<void()> on_destroy_;

  std::vector<ChoiceState> choices_;
  std::vector<bool> started_;  // per choice: a chunk was sent
  struct PromptProgress {
    int32_t finished_samples = 0;
    int32_t max_completion_tokens = 0;
    std::chrono::steady_clock::time_point first_token;
    bool has_first = false;
  };
  std::vector<PromptProgress> progress_;
  UsageTotals usage_;
  size_t finished_choices_ = 0;
  std::string error_;  // first engine error, if any
  bool done_ = false;
  int status_ = 200;
};

}  // namespace mixserve::server
