#include "engine/token_stream.h"

#include <utility>

namespace mixserve {

TokenStream::TokenStream(std::string request_id, int32_t num_samples)
    : request_id_(std::move(request_id)), num_samples_(num_samples) {}

void TokenStream::push(StreamEvent event) {
  std::function<void()> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (event.finish_reason) ++samples_finished_;
    events_.push_back(std::move(event));
    listener = listener_;
  }
  cv_.notify_all();
  if (listener) listener();
}

void TokenStream::set_listener(std::function<void()> listener) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener_ = listener;
  }
  if (listener) listener();
}

std::optional<StreamEvent> TokenStream::pop_locked() {
  if (events_.empty()) return std::nullopt;
  StreamEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

std::optional<StreamEvent> TokenStream::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !events_.empty() || samples_finished_ >= num_samples_; });
  return pop_locked();
}

std::optional<StreamEvent> TokenStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout,
               [&] { return !events_.empty() || samples_finished_ >= num_samples_; });
  return pop_locked();
}

std::optional<StreamEvent> TokenStream::try_next() {
  std::lock_guard<std::mutex> lock(mu_);
  return pop_locked();
}

bool TokenStream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_.empty() && samples_finished_ >= num_samples_;
}

}  // namespace mixserve
