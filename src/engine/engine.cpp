#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>
#include <random>

#include "engine/block_manager.h"
#include "engine/device_sampling.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "engine/text_output.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve {

struct EngineRequestState {
  Request request;
  std::shared_ptr<TokenStream> stream;
  uint64_t seed = 0;
  int32_t max_tokens = 0;           // resolved
  bool siblings_released = false;   // samples 1..n-1 handed to the scheduler
  std::vector<int64_t> sibling_ids;
};

struct EngineSequence {
  Sequence seq;
  std::shared_ptr<EngineRequestState> req;
  int32_t sample_index = 0;
  std::unique_ptr<TextOutput> text;
  bool cache_hit_counted = false;
  // When the scheduler first gave this sequence tokens to compute (for Usage::queue_time_s).
  std::optional<std::chrono::steady_clock::time_point> first_scheduled;
};

// A token the emitter hands out: its text (TextOutput::push, with a tokenizer), then the event
// to the stream (or, at a stop string, to late_stops_).
struct Engine::PendingText {
  EngineSequence* es = nullptr;
  StreamEvent event;
  int32_t token = 0;
  bool past_min = false;  // past min_tokens: stop strings may end the sequence
};

Engine::Engine(std::unique_ptr<Backend> backend, std::shared_ptr<const Tokenizer> tokenizer,
               EngineConfig config)
    : config_(std::move(config)), backend_(std::move(backend)), tokenizer_(std::move(tokenizer)) {
  MIXSERVE_CHECK(backend_ != nullptr, "Engine: no backend");
  MIXSERVE_CHECK(config_.block_size >= 1 && config_.block_size <= 1024,
                 "--block-size must be in [1, 1024], got ", config_.block_size);
  const ModelConfig& mc = backend_->config();
  vocab_size_ = mc.vocab_size;
  MIXSERVE_CHECK(vocab_size_ >= 1, "Engine: the model's vocab_size is ", vocab_size_);
  num_blocks_ = config_.num_kv_blocks;
  if (num_blocks_ <= 0) {
    // Without a size from the flags: what the backend says fits (the CUDA backend sizes it from
    // free memory), else the fixed default.
    const KvCacheSpec offered = backend_->kv_cache_spec();
    const int64_t offered_tokens = int64_t{offered.num_blocks} * offered.block_size;
    const int64_t tokens = config_.kv_cache_tokens > 0 ? config_.kv_cache_tokens
                           : offered_tokens > 0        ? offered_tokens
                                                       : EngineConfig::kDefaultKvCacheTokens;
    num_blocks_ = static_cast<int32_t>(
        std::min<int64_t>(tokens / config_.block_size, std::numeric_limits<int32_t>::max()));
  }
  MIXSERVE_CHECK(num_blocks_ >= 1, "--kv-cache-tokens must hold at least one block of ",
                 config_.block_size, " tokens");
  const int64_t capacity = int64_t{num_blocks_} * config_.block_size;
  int64_t len = config_.max_model_len > 0 ? config_.max_model_len : mc.max_position_embeddings;
  if (len <= 0) len = capacity;
  if (len > capacity && config_.max_model_len > 0) {
    log::warn("max_model_len ", len, " exceeds the KV cache (", capacity,
              " tokens); limiting it to ", capacity, " (raise --kv-cache-tokens for more)");
  }
  len = std::min(len, capacity);
  max_model_len_ = static_cast<int32_t>(len);
  if (tokenizer_) {
    eos_ids_ = tokenizer_->eos_ids();
  } else {
    eos_ids_.assign(mc.eos_token_ids.begin(), mc.eos_token_ids.end());
  }
  backend_->allocate_kv_cache({num_blocks_, config_.block_size});
  blocks_ = std::make_unique<BlockManager>(num_blocks_, config_.block_size,
                                           config_.enable_prefix_caching);
  scheduler_ = make_scheduler(config_.scheduler_policy, *blocks_,
                              {config_.max_num_seqs, config_.max_num_batched_tokens});
  publish_stats();
}

Engine::~Engine() { shutdown(false); }

std::shared_ptr<TokenStream> Engine::submit(Request request) {
  static std::atomic<uint64_t> next_auto_id{0};
  const SamplingParams& p = request.params;
  if (request.id.empty()) request.id = "req-" + std::to_string(next_auto_id++);
  const std::string id = request.id;
  try {
    p.validate();
  } catch (const Error& e) {
    throw_error("request ", id, ": ", e.what());
  }
  const int64_t prompt_len = static_cast<int64_t>(request.prompt_ids.size());
  MIXSERVE_CHECK(prompt_len >= 1, "request ", id, ": the prompt is empty");
  for (int32_t t : request.prompt_ids) {
    MIXSERVE_CHECK(t >= 0 && t < vocab_size_, "request ", id, ": prompt token id ", t,
                   " is outside the vocabulary [0, ", vocab_size_, ")");
  }
  MIXSERVE_CHECK(prompt_len < max_model_len_, "request ", id, ": the prompt has ", prompt_len,
                 " tokens, the maximum model length is ", max_model_len_,
                 " (shorten the prompt or raise --kv-cache-tokens / --max-model-len)");
  const int64_t max_tokens = p.max_tokens.value_or(int32_t(max_model_len_ - prompt_len));
  MIXSERVE_CHECK(prompt_len + max_tokens <= max_model_len_, "request ", id, ": prompt (",
                 prompt_len, " tokens) + max_tokens (", max_tokens, ") = ",
                 prompt_len + max_tokens, " exceeds the maximum model length ", max_model_len_,
                 " (shorten the prompt or lower max_tokens)");
  MIXSERVE_CHECK(blocks_->blocks_for_tokens(prompt_len + max_tokens) <= num_blocks_, "request ",
                 id, ": ", prompt_len + max_tokens, " tokens can never fit the KV cache of ",
                 int64_t{num_blocks_} * config_.block_size, " tokens (raise --kv-cache-tokens)");

  auto state = std::make_shared<EngineRequestState>();
  state->max_tokens = static_cast<int32_t>(max_tokens);
  state->seed = p.seed ? *p.seed : std::random_device{}() * 0x100000001ULL ^ std::random_device{}();
  state->stream = std::make_shared<TokenStream>(id, p.n);
  state->request = std::move(request);
  auto stream = state->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    MIXSERVE_CHECK(accepting_, "request ", id, ": the engine is shutting down");
    auto it = streams_.find(id);
    MIXSERVE_CHECK(it == streams_.end() || it->second.expired(), "request ", id,
                   ": a request with this id is already running");
    streams_[id] = stream;
    inbox_.push_back(std::move(state));
  }
  cv_.notify_all();
  return stream;
}

void Engine::abort(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = streams_.find(request_id);
  if (it == streams_.end()) return;
  if (auto s = it->second.lock()) s->cancel();
}

void Engine::admit_new_requests() {
  std::vector<std::shared_ptr<EngineRequestState>> fresh;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fresh.swap(inbox_);
  }
  for (auto& rs : fresh) {
    const SamplingParams& p = rs->request.params;
    // With prefix caching, samples 1..n-1 wait until sample 0 has computed the prompt, then
    // take its blocks from the cache instead of computing them again.
    rs->siblings_released = !config_.enable_prefix_caching || p.n == 1;
    for (int32_t j = 0; j < p.n; ++j) {
      auto es = std::make_unique<EngineSequence>();
      es->req = rs;
      es->sample_index = j;
      es->seq.seq_id = next_seq_id_++;
      es->seq.tokens = rs->request.prompt_ids;
      es->seq.num_prompt_tokens = static_cast<int32_t>(rs->request.prompt_ids.size());
      es->seq.max_tokens = rs->max_tokens;
      if (tokenizer_) {
        es->text = std::make_unique<TextOutput>(tokenizer_, rs->request.prompt_ids,
                                                p.skip_special_tokens, p.stop);
      }
      if (j == 0 || rs->siblings_released) {
        scheduler_->add(&es->seq);
      } else {
        rs->sibling_ids.push_back(es->seq.seq_id);
      }
      live_[es->seq.seq_id] = std::move(es);
    }
  }
}

void Engine::handle_cancellations() {
  std::vector<int64_t> cancelled;
  for (auto& [id, es] : live_)
    if (es->req->stream->cancelled()) cancelled.push_back(id);
  if (cancelled.empty()) return;
  join_emitter();  // the text already made goes out before the abort
  for (int64_t id : cancelled) {
    auto it = live_.find(id);
    if (it != live_.end()) finish(*it->second, "abort", StreamEvent{});
  }
}

void Engine::finish(EngineSequence& es, const std::string& reason, StreamEvent event) {
  emitter_.wait();  // it may be reading es (its text, its stream)
  const Sequence& s = es.seq;
  event.sample_index = es.sample_index;
  if (es.text && reason != "stop") event.text += es.text->finish();
  event.finish_reason = reason;
  event.usage = Usage{s.num_prompt_tokens, s.num_output_tokens(), s.num_cached_prompt_tokens};
  const auto scheduled = es.first_scheduled.value_or(std::chrono::steady_clock::now());
  event.usage->queue_time_s =
      std::max(0.0, std::chrono::duration<double>(scheduled - es.req->request.arrival).count());
  es.req->stream->push(std::move(event));
  scheduler_->remove(&es.seq);
  ++counters_.requests_finished;
  live_.erase(s.seq_id);  // es is gone from here on
}

void Engine::postprocess(EngineSequence& es, int32_t token, TokenLogprobs lp) {
  Sequence& s = es.seq;
  EngineRequestState& rs = *es.req;
  const SamplingParams& p = rs.request.params;
  if (!rs.siblings_released) {  // the prompt is now in the prefix cache
    rs.siblings_released = true;
    for (auto it = rs.sibling_ids.rbegin(); it != rs.sibling_ids.rend(); ++it)
      scheduler_->add_front(&live_.at(*it)->seq);
    rs.sibling_ids.clear();
  }
  s.tokens.push_back(token);
  ++counters_.generated_tokens;
  StreamEvent ev;
  ev.sample_index = es.sample_index;
  ev.token_ids = {token};
  if (p.logprobs >= 0) ev.logprobs.push_back(std::move(lp));

  const bool past_min = s.num_output_tokens() > p.min_tokens;
  const bool is_eos =
      !p.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
  const bool is_stop_id =
      std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) != p.stop_token_ids.end();
  if (past_min && (is_eos || is_stop_id)) return finish(es, "stop", std::move(ev));
  if (s.num_output_tokens() >= s.max_tokens) {  // the last token: its text now
    bool stopped = false;
    if (es.text) ev.text = es.text->push(token, past_min, &stopped);
    return finish(es, stopped ? "stop" : "length", std::move(ev));
  }
  pending_.push_back({&es, std::move(ev), token, past_min});  // text and push: the emitter
}

void Engine::emit_pending() {
  if (pending_.empty()) return;
  emitter_.run([this, items = std::move(pending_)]() mutable {
    for (PendingText& p : items) {
      bool stopped = false;
      if (p.es->text) p.event.text = p.es->text->push(p.token, p.past_min, &stopped);
      if (stopped) {
        late_stops_.emplace_back(p.es->seq.seq_id, std::move(p.event));
      } else {
        p.es->req->stream->push(std::move(p.event));
      }
    }
  });
  pending_.clear();
}

void Engine::join_emitter() {
  emitter_.wait();
  std::vector<std::pair<int64_t, StreamEvent>> stops;
  stops.swap(late_stops_);
  for (auto& [id, event] : stops) {
    auto it = live_.find(id);
    if (it != live_.end()) finish(*it->second, "stop", std::move(event));
  }
}

void Engine::run_step(const ScheduleResult& sched,
                      std::chrono::steady_clock::time_point scheduled) {
  // Flat plan: sequence i computes tokens [num_computed, num_computed + n).
  BatchPlan plan;
  const int32_t bs = config_.block_size;
  std::vector<EngineSequence*> sampled;
  plan.seq_offsets.push_back(0);
  for (const ScheduledChunk& c : sched.chunks)
    plan.max_blocks_per_seq =
        std::max(plan.max_blocks_per_seq, static_cast<int32_t>(c.seq->kv.blocks.size()));
  for (const ScheduledChunk& c : sched.chunks) {
    const Sequence& s = *c.seq;
    for (int32_t pos = s.num_computed; pos < s.num_computed + c.num_tokens; ++pos) {
      plan.token_ids.push_back(s.tokens[size_t(pos)]);
      plan.positions.push_back(pos);
      plan.slot_mapping.push_back(int64_t{s.kv.blocks[size_t(pos / bs)]} * bs + pos % bs);
      if (pos < s.num_prompt_tokens) ++counters_.prompt_tokens_computed;
    }
    plan.seq_offsets.push_back(plan.num_tokens());
    plan.context_lens.push_back(s.num_computed + c.num_tokens);
    std::vector<int32_t> row(size_t(plan.max_blocks_per_seq), -1);
    std::copy(s.kv.blocks.begin(), s.kv.blocks.end(), row.begin());
    plan.block_tables.insert(plan.block_tables.end(), row.begin(), row.end());
    EngineSequence* es = live_.at(s.seq_id).get();
    if (!es->first_scheduled) es->first_scheduled = std::chrono::steady_clock::now();
    if (c.sample) {
      plan.logits_rows.push_back(plan.num_tokens() - 1);
      sampled.push_back(es);
    }
    if (!es->cache_hit_counted) {  // first chunk ever: count the prefix-cache hit once
      es->cache_hit_counted = true;
      counters_.cached_prompt_tokens += s.num_cached_prompt_tokens;
    }
  }
  counters_.tokens_computed += plan.num_tokens();
  // What the Sampler needs of each sampled row; the histories are views into the sequences.
  std::vector<std::vector<int32_t>> suppressed(sampled.size());
  std::vector<SampleContext> contexts;
  for (size_t r = 0; r < sampled.size(); ++r) {
    const EngineSequence& es = *sampled[r];
    const SamplingParams& p = es.req->request.params;
    const Sequence& s = es.seq;
    std::span<const int32_t> all(s.tokens);
    if (s.num_output_tokens() < p.min_tokens) {
      if (!p.ignore_eos) suppressed[r] = eos_ids_;
      suppressed[r].insert(suppressed[r].end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
    }
    contexts.push_back({all.first(size_t(s.num_prompt_tokens)),
                        all.subspan(size_t(s.num_prompt_tokens)), suppressed[r], es.req->seed,
                        es.sample_index});
  }
  std::vector<int32_t> ids(sampled.size());
  std::vector<TokenLogprobs> lps(sampled.size());
  using Clock = std::chrono::steady_clock;
  // The backend's call alone: building its inputs and host sampling count as host time.
  Clock::time_point forward_start{}, forward_end{};
  try {
    if (backend_->supports_device_sampling()) {
      // The backend samples on its device with the same semantics (sampler.h); only rows that
      // want log-probabilities bring their raw logits back.
      SamplingBatch batch;
      for (size_t r = 0; r < sampled.size(); ++r)
        append_sampling_row(sampled[r]->req->request.params, contexts[r], &batch);
      SampledTokens out;
      forward_start = Clock::now();
      backend_->forward_and_sample(plan, batch, &out);
      forward_end = Clock::now();
      for (size_t r = 0, k = 0; r < sampled.size(); ++r) {
        ids[r] = out.ids[r];
        const int32_t n = sampled[r]->req->request.params.logprobs;
        if (n < 0) continue;
        std::span<const float> raw(out.raw_logits.data() + k++ * size_t(vocab_size_),
                                   size_t(vocab_size_));
        lps[r] = compute_logprobs(raw, ids[r], n);
      }
    } else {
      logits_.resize(plan.logits_rows.size() * size_t(vocab_size_));
      forward_start = Clock::now();
      backend_->forward(plan, logits_);
      forward_end = Clock::now();
      for (size_t r = 0; r < sampled.size(); ++r) {
        std::span<float> row(logits_.data() + r * size_t(vocab_size_), size_t(vocab_size_));
        SampleResult res = sample_token(row, sampled[r]->req->request.params, contexts[r]);
        ids[r] = res.id;
        lps[r] = std::move(res.logprobs);
      }
    }
  } catch (const std::exception& e) {
    log::error("engine: forward failed: ", e.what());
    join_emitter();  // the previous step's text first; its late stops end theirs as "stop"
    for (const ScheduledChunk& c : sched.chunks) {
      auto it = live_.find(c.seq->seq_id);
      if (it != live_.end()) finish(*it->second, std::string("error: ") + e.what(), StreamEvent{});
    }
    return;
  }
  counters_.forward_seconds += std::chrono::duration<double>(forward_end - forward_start).count();
  counters_.plan_seconds += std::chrono::duration<double>(forward_start - scheduled).count();
  scheduler_->on_computed(sched);
  // The previous step's text is done by now (it ran beside this step); a stop string in it
  // finishes its sequence here, and this step's token for that sequence is dropped.
  std::vector<int64_t> sampled_ids(sampled.size());
  for (size_t r = 0; r < sampled.size(); ++r) sampled_ids[r] = sampled[r]->seq.seq_id;
  join_emitter();
  for (size_t r = 0; r < sampled.size(); ++r) {
    auto it = live_.find(sampled_ids[r]);
    if (it != live_.end()) postprocess(*it->second, ids[r], std::move(lps[r]));
  }
  emit_pending();
  counters_.output_seconds += std::chrono::duration<double>(Clock::now() - forward_end).count();
}

bool Engine::step() {
  MIXSERVE_CHECK(!threaded_.load(),
                 "Engine::step: the loop thread is running; use submit() and the streams");
  return do_step();
}

bool Engine::do_step() {
  const auto start = std::chrono::steady_clock::now();
  admit_new_requests();
  handle_cancellations();
  ScheduleResult sched = scheduler_->schedule();
  counters_.preemptions += static_cast<int64_t>(sched.preempted.size());
  const bool did = !sched.empty();
  if (did) {
    ++counters_.steps;
    const auto scheduled = std::chrono::steady_clock::now();
    counters_.schedule_seconds += std::chrono::duration<double>(scheduled - start).count();
    run_step(sched, scheduled);
    counters_.step_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } else {
    join_emitter();  // nothing runs: the last text goes out now
  }
  publish_stats();
  return did;
}

void Engine::publish_stats() {
  EngineStats s = counters_;
  s.num_running = scheduler_->num_running();
  s.num_waiting = static_cast<int32_t>(live_.size()) - s.num_running;
  s.num_kv_blocks = num_blocks_;
  s.num_free_kv_blocks = blocks_->num_free_blocks();
  s.kv_usage = blocks_->usage();
  std::lock_guard<std::mutex> lock(mu_);
  s.num_waiting += static_cast<int32_t>(inbox_.size());
  published_ = s;
  // Forget finished streams so that their ids can be used again.
  for (auto it = streams_.begin(); it != streams_.end();) {
    auto st = it->second.lock();
    it = (!st || st->finished()) ? streams_.erase(it) : std::next(it);
  }
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

void Engine::abort_all(const std::string& reason) {
  try {
    join_emitter();  // text already made goes out first; late stops end as "stop"
  } catch (const std::exception& e) {
    log::error("engine: text output failed: ", e.what());
  }
  admit_new_requests();
  std::vector<EngineSequence*> all;
  for (auto& [id, es] : live_) all.push_back(es.get());
  for (EngineSequence* es : all) finish(*es, reason, StreamEvent{});
  publish_stats();
}

void Engine::loop() {
  while (true) {
    const bool idle = !scheduler_->has_work() && live_.empty();
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (idle) cv_.wait(lock, [&] { return stopping_ || !inbox_.empty(); });
      if (stopping_ && (!drain_ || (idle && inbox_.empty()))) break;
    }
    try {
      do_step();
    } catch (const std::exception& e) {
      // A bookkeeping error must not leave clients waiting forever.
      log::error("engine: step failed: ", e.what());
      abort_all(std::string("error: ") + e.what());
    }
  }
  abort_all("abort");
}

void Engine::start() {
  std::lock_guard<std::mutex> lock(mu_);
  MIXSERVE_CHECK(!thread_.joinable() && !stopping_, "Engine::start: already started or stopped");
  threaded_ = true;
  thread_ = std::thread([this] { loop(); });
}

void Engine::shutdown(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    stopping_ = true;
    drain_ = drain;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    return;
  }
  if (drain) {
    while (do_step()) {
    }
  }
  abort_all("abort");
}

std::vector<GenerateResult> Engine::generate(std::vector<Request> requests) {
  std::vector<std::shared_ptr<TokenStream>> streams;
  std::vector<GenerateResult> results(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    results[i].prompt_ids = requests[i].prompt_ids;
    results[i].samples.resize(size_t(requests[i].params.n));
    streams.push_back(submit(std::move(requests[i])));
    results[i].request_id = streams.back()->request_id();
  }
  auto collect = [&](size_t i, StreamEvent ev) {
    SampleOutput& out = results[i].samples.at(size_t(ev.sample_index));
    out.token_ids.insert(out.token_ids.end(), ev.token_ids.begin(), ev.token_ids.end());
    out.text += ev.text;
    for (auto& lp : ev.logprobs) out.logprobs.push_back(std::move(lp));
    if (ev.finish_reason) out.finish_reason = *ev.finish_reason;
    if (ev.usage) out.usage = *ev.usage;
  };
  const bool threaded = threaded_.load();
  for (size_t i = 0; i < streams.size(); ++i) {
    while (!streams[i]->finished()) {
      if (!threaded) {
        while (auto ev = streams[i]->try_next()) collect(i, std::move(*ev));
        if (streams[i]->finished()) break;
        MIXSERVE_CHECK(step(), "Engine::generate: no progress on request ",
                       streams[i]->request_id(), " (engine stopped?)");
        continue;
      }
      if (auto ev = streams[i]->next()) collect(i, std::move(*ev));
    }
  }
  return results;
}

}  // namespace mixserve
