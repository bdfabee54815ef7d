// TokenStream: the one channel from the engine loop to whoever submitted a request.
//
// The engine pushes one StreamEvent per sample per step that produced something; the consumer
// (an HTTP handler, the CLI, a test) pops them from any thread. cancel() is honoured by the
// engine at its next step: the request finishes with "abort" and its KV blocks are freed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace mixserve {

struct TopLogprob {
  int32_t id = 0;
  float logprob = 0.0f;
};

// Log-probabilities of one generated token, from the raw model output (see docs/engine.md).
struct TokenLogprobs {
  int32_t id = 0;                // the chosen token
  float logprob = 0.0f;          // its log-probability
  std::vector<TopLogprob> top;   // the K most likely tokens, most likely first
};

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // prompt tokens whose KV came from the prefix cache
  // Seconds from Request::arrival until the engine first scheduled this sample's tokens
  // (parsing, tokenization and the wait for a batch slot); until finish if it never was.
  double queue_time_s = 0.0;
};

struct StreamEvent {
  int32_t sample_index = 0;            // which of the request's n samples
  std::vector<int32_t> token_ids;      // new tokens of this sample
  std::string text;                    // new final text (held back while it may start a stop)
  std::vector<TokenLogprobs> logprobs; // one per token in token_ids, when asked for
  // Set on the sample's last event: "stop", "length", "abort", or an error message.
  std::optional<std::string> finish_reason;
  std::optional<Usage> usage;          // with finish_reason
};

class TokenStream {
 public:
  TokenStream(std::string request_id, int32_t num_samples);

  const std::string& request_id() const { return request_id_; }
  int32_t num_samples() const { return num_samples_; }

  // Consumer side. next() waits until an event arrives or every sample has finished and every
  // event was taken (then nullopt); with a timeout it also returns nullopt when time runs out.
  std::optional<StreamEvent> next();
  std::optional<StreamEvent> next(std::chrono::milliseconds timeout);
  std::optional<StreamEvent> try_next();
  // True once every sample has finished and every event has been taken.
  bool finished() const;
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Engine side. An event with finish_reason marks its sample finished.
  void push(StreamEvent event);

  // Called (on the pushing thread, without the stream's lock held) after every push, so an
  // asynchronous consumer needs no thread of its own: it should only schedule a drain with
  // try_next(). Also called once right away when set, in case events arrived before.
  // Thread-safe; an empty function removes the listener.
  void set_listener(std::function<void()> listener);

 private:
  std::optional<StreamEvent> pop_locked();

  const std::string request_id_;
  const int32_t num_samples_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;
  int32_t samples_finished_ = 0;
  std::function<void()> listener_;
};

}  // namespace mixserve
