#include "server/completion_job.h"

#include <algorithm>

#include "server/metrics.h"

namespace mixserve::server {

using Clock = std::chrono::steady_clock;

namespace {
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

CompletionJob::CompletionJob(ResponseFormatter formatter, std::vector<PromptRun> prompts,
                             JobOptions options, ServerMetrics* metrics, Clock::time_point arrival,
                             std::function<void()> on_destroy)
    : fmt_(std::move(formatter)), prompts_(std::move(prompts)), options_(options),
      metrics_(metrics), arrival_(arrival), on_destroy_(std::move(on_destroy)),
      choices_(prompts_.size() * size_t(options_.n)), started_(choices_.size(), false),
      progress_(prompts_.size()) {}

CompletionJob::~CompletionJob() {
  cancel();  // a no-op for finished streams
  for (PromptRun& p : prompts_) {
    if (p.stream) p.stream->set_listener(nullptr);
  }
  if (on_destroy_) on_destroy_();
}

void CompletionJob::set_listener(const std::function<void()>& listener) {
  for (PromptRun& p : prompts_) p.stream->set_listener(listener);
}

void CompletionJob::cancel() {
  for (PromptRun& p : prompts_) {
    if (p.stream) p.stream->cancel();
  }
}

std::string CompletionJob::poll() {
  std::string out;
  if (done_) return out;
  for (size_t i = 0; i < prompts_.size(); ++i) {
    while (std::optional<StreamEvent> ev = prompts_[i].stream->try_next()) on_event(i, *ev, out);
  }
  if (finished_choices_ == choices_.size()) finish(out);
  return out;
}

void CompletionJob::on_event(size_t pi, StreamEvent& ev, std::string& out) {
  const size_t idx = pi * size_t(options_.n) + size_t(ev.sample_index);
  if (idx >= choices_.size()) return;
  ChoiceState& c = choices_[idx];
  PromptProgress& pp = progress_[pi];
  const PromptRun& prompt = prompts_[pi];
  const Clock::time_point now = Clock::now();
  if (!ev.token_ids.empty() && !pp.has_first) {
    pp.has_first = true;
    pp.first_token = now;
    if (metrics_) metrics_->observe_time_to_first_token(seconds(now - arrival_));
  }
  c.token_ids.insert(c.token_ids.end(), ev.token_ids.begin(), ev.token_ids.end());
  if (options_.stream) {
    const bool first = !started_[idx];
    std::string text = ev.text;
    std::span<const int32_t> echo_ids;
    if (first && options_.echo) {
      text = prompt.echo_text + text;
      echo_ids = prompt.prompt_ids;
    }
    // A first chunk always goes out (it carries the chat role); later ones when they say
    // something (for a model without a tokenizer: new token ids).
    const bool ids_only = !fmt_.has_tokenizer() && !ev.token_ids.empty();
    if (first || !text.empty() || !ev.logprobs.empty() || ids_only) {
      out += fmt_.chunk(int32_t(idx), text, ev.logprobs, echo_ids, c, first, ev.token_ids);
      started_[idx] = true;
    }
  } else {
    c.text += ev.text;
    std::move(ev.logprobs.begin(), ev.logprobs.end(), std::back_inserter(c.logprobs));
  }
  if (!ev.finish_reason) return;

  const std::string& reason = *ev.finish_reason;
  c.finish_reason = reason;
  ++finished_choices_;
  ++pp.finished_samples;
  if (ev.usage) {
    if (ev.sample_index == 0) {
      usage_.prompt_tokens += ev.usage->prompt_tokens;
      usage_.cached_prompt_tokens += ev.usage->cached_prompt_tokens;
      if (metrics_) metrics_->observe_queue_time(ev.usage->queue_time_s);
    }
    usage_.completion_tokens += ev.usage->completion_tokens;
    pp.max_completion_tokens = std::max(pp.max_completion_tokens, ev.usage->completion_tokens);
  }
  const bool is_error = reason != "stop" && reason != "length" && reason != "abort";
  if (is_error && error_.empty()) error_ = reason;
  if (metrics_) metrics_->count_finished(is_error ? "error" : reason);
  if (options_.stream) {
    if (is_error) {
      out += error_event(ApiError(500, "generation failed: " + reason));
    } else {
      out += fmt_.finish_chunk(int32_t(idx), reason);
    }
  }
  if (pp.finished_samples == options_.n && metrics_) {
    metrics_->observe_e2e_latency(seconds(now - arrival_));
    if (pp.has_first && pp.max_completion_tokens > 1) {
      metrics_->observe_time_per_output_token(seconds(now - pp.first_token) /
                                              double(pp.max_completion_tokens - 1));
    }
  }
}

void CompletionJob::finish(std::string& out) {
  done_ = true;
  if (options_.stream) {
    if (options_.include_usage) out += fmt_.usage_chunk(usage_);
    out += ResponseFormatter::done_event();
    return;
  }
  if (!error_.empty()) {
    const ApiError err(500, "generation failed: " + error_);
    status_ = err.status();
    if (metrics_) metrics_->count_error(status_);
    out = error_json(err);
    return;
  }
  std::vector<std::span<const int32_t>> echo_ids(choices_.size());
  if (options_.echo) {
    for (size_t i = 0; i < choices_.size(); ++i) {
      const PromptRun& p = prompts_[i / size_t(options_.n)];
      choices_[i].text = p.echo_text + choices_[i].text;
      echo_ids[i] = p.prompt_ids;
    }
  }
  out = fmt_.full_response(choices_, echo_ids, usage_);
}

}  // namespace mixserve::server
