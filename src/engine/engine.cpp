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

// A sequence's token that the step in flight is still sampling (async scheduling).
constexpr int32_t kPlaceholderToken = -1;

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
  int32_t slot = 0;       // its index in the sequence's tokens
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

void Engine::finish(EngineSequence& es, const std::string& reason, StreamEvent event,
                    int32_t keep) {
  emitter_.wait();  // it may be reading es (its text, its stream)
  Sequence& s = es.seq;
  if (keep >= 0 && keep < s.total_tokens()) s.tokens.resize(size_t(keep));
  while (s.total_tokens() > s.num_prompt_tokens && s.tokens.back() == kPlaceholderToken)
    s.tokens.pop_back();
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

void Engine::postprocess(EngineSequence& es, int32_t slot, TokenLogprobs lp) {
  Sequence& s = es.seq;
  EngineRequestState& rs = *es.req;
  const SamplingParams& p = rs.request.params;
  if (!rs.siblings_released) {  // the prompt is now in the prefix cache
    rs.siblings_released = true;
    for (auto it = rs.sibling_ids.rbegin(); it != rs.sibling_ids.rend(); ++it)
      scheduler_->add_front(&live_.at(*it)->seq);
    rs.sibling_ids.clear();
  }
  const int32_t token = s.tokens[size_t(slot)];
  ++counters_.generated_tokens;
  StreamEvent ev;
  ev.sample_index = es.sample_index;
  ev.token_ids = {token};
  if (p.logprobs >= 0) ev.logprobs.push_back(std::move(lp));

  // Output tokens up to this one (a placeholder of the step after may follow it).
  const int32_t num_output = slot + 1 - s.num_prompt_tokens;
  const bool past_min = num_output > p.min_tokens;
  const bool is_eos =
      !p.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
  const bool is_stop_id =
      std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) != p.stop_token_ids.end();
  if (past_min && (is_eos || is_stop_id)) return finish(es, "stop", std::move(ev), slot + 1);
  if (num_output >= s.max_tokens) {  // the last token: its text now
    bool stopped = false;
    if (es.text) ev.text = es.text->push(token, past_min, &stopped);
    return finish(es, stopped ? "stop" : "length", std::move(ev), slot + 1);
  }
  pending_.push_back({&es, std::move(ev), token, past_min, slot});  // text and push: the emitter
}

void Engine::emit_pending() {
  if (pending_.empty()) return;
  emitter_.run([this, items = std::move(pending_)]() mutable {
    for (PendingText& p : items) {
      bool stopped = false;
      if (p.es->text) p.event.text = p.es->text->push(p.token, p.past_min, &stopped);
      if (stopped) {
        late_stops_.push_back({p.es->seq.seq_id, std::move(p.event), p.slot + 1});
      } else {
        p.es->req->stream->push(std::move(p.event));
      }
    }
  });
  pending_.clear();
}

void Engine::join_emitter() {
  emitter_.wait();
  std::vector<LateStop> stops;
  stops.swap(late_stops_);
  for (LateStop& st : stops) {
    auto it = live_.find(st.seq_id);
    if (it != live_.end()) finish(*it->second, "stop", std::move(st.event), st.keep);
  }
}

// A scheduled step with its plan built. Plan tokens that are placeholders (a token of the
// step in flight, not sampled yet) are listed in `fills` and written at launch.
struct Engine::PreparedStep {
  ScheduleResult sched;
  BatchPlan plan;
  std::vector<EngineSequence*> sampled;  // the sequences of plan.logits_rows, in order
  struct Fill {
    int32_t plan_index;
    const Sequence* seq;
    int32_t position;
  };
  std::vector<Fill> fills;
  double build_seconds = 0.0;  // building the plan (plan_seconds, with the launch's fill-in)
};

// What a submitted step's results need: its rows' sequences (by id: a sequence may end while
// the step is in flight) and where each row's token goes.
struct Engine::StepInFlight {
  std::vector<int64_t> row_seq_ids;
  std::vector<int32_t> row_slots;     // index of the row's placeholder in its sequence's tokens
  std::vector<int32_t> row_logprobs;  // the row's SamplingParams::logprobs
  std::vector<int64_t> step_seq_ids;  // every sequence of the step (to fail them)
  bool device_sampled = false;
  std::chrono::steady_clock::time_point submitted;
};

struct Engine::StepResults {
  std::vector<int64_t> row_seq_ids;
  std::vector<int32_t> row_slots;
  std::vector<TokenLogprobs> logprobs;
};

Engine::PreparedStep Engine::prepare_step(ScheduleResult sched) {
  // Flat plan: sequence i computes tokens [num_computed, num_computed + n).
  PreparedStep step;
  step.sched = std::move(sched);
  BatchPlan& plan = step.plan;
  const int32_t bs = config_.block_size;
  plan.seq_offsets.push_back(0);
  for (const ScheduledChunk& c : step.sched.chunks)
    plan.max_blocks_per_seq =
        std::max(plan.max_blocks_per_seq, static_cast<int32_t>(c.seq->kv.blocks.size()));
  for (const ScheduledChunk& c : step.sched.chunks) {
    const Sequence& s = *c.seq;
    for (int32_t pos = s.num_computed; pos < s.num_computed + c.num_tokens; ++pos) {
      const int32_t token = s.tokens[size_t(pos)];
      if (token == kPlaceholderToken) step.fills.push_back({plan.num_tokens(), &s, pos});
      plan.token_ids.push_back(token);
      plan.positions.push_back(pos);
      plan.slot_mapping.push_back(int64_t{s.kv.blocks[size_t(pos / bs)]} * bs + pos % bs);
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
      step.sampled.push_back(es);
    }
  }
  return step;
}

namespace {

// The Sampler's view of a sequence whose first `len` tokens are known (the rest, if any, is
// the placeholder being sampled): prompt and output histories, and the ids suppressed before
// min_tokens.
SampleContext sample_context(const Sequence& s, int32_t len, const SamplingParams& p,
                             const std::vector<int32_t>& eos_ids, uint64_t seed,
                             int32_t sample_index, std::vector<int32_t>* suppressed) {
  std::span<const int32_t> all(s.tokens.data(), size_t(len));
  suppressed->clear();
  if (len - s.num_prompt_tokens < p.min_tokens) {
    if (!p.ignore_eos) *suppressed = eos_ids;
    suppressed->insert(suppressed->end(), p.stop_token_ids.begin(), p.stop_token_ids.end());
  }
  return {all.first(size_t(s.num_prompt_tokens)), all.subspan(size_t(s.num_prompt_tokens)),
          *suppressed, seed, sample_index};
}

}  // namespace

void Engine::launch(PreparedStep& step) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  BatchPlan& plan = step.plan;
  for (const PreparedStep::Fill& f : step.fills) {
    const int32_t token = f.seq->tokens[size_t(f.position)];
    MIXSERVE_CHECK(token != kPlaceholderToken, "engine: sequence ", f.seq->seq_id,
                   " is planned with token ", f.position, " still unknown");
    plan.token_ids[size_t(f.plan_index)] = token;
  }
  auto f = std::make_unique<StepInFlight>();
  f->device_sampled = backend_->supports_device_sampling();
  const size_t R = step.sampled.size();
  SamplingBatch batch;
  if (f->device_sampled) {
    // The backend samples on its device with the same semantics (sampler.h); only rows that
    // want log-probabilities bring their raw logits back.
    std::vector<int32_t> suppressed;
    for (EngineSequence* es : step.sampled) {
      const SamplingParams& p = es->req->request.params;
      append_sampling_row(p,
                          sample_context(es->seq, es->seq.total_tokens(), p, eos_ids_,
                                         es->req->seed, es->sample_index, &suppressed),
                          &batch);
    }
  }
  const Clock::time_point submit = Clock::now();
  counters_.plan_seconds +=
      step.build_seconds + std::chrono::duration<double>(submit - start).count();
  if (last_collect_) {
    counters_.launch_gap_seconds += std::chrono::duration<double>(submit - *last_collect_).count();
    ++counters_.launch_gaps;
  }
  if (f->device_sampled) {
    backend_->submit_and_sample(plan, batch);
  } else {
    logits_.resize(R * size_t(vocab_size_));
    backend_->forward(plan, logits_);
  }
  f->submitted = submit;
  counters_.forward_seconds += std::chrono::duration<double>(Clock::now() - submit).count();
  // Committed: the counters, the chunks' KV, and a placeholder for each token being sampled.
  counters_.tokens_computed += plan.num_tokens();
  for (const ScheduledChunk& c : step.sched.chunks) {
    const Sequence& s = *c.seq;
    counters_.prompt_tokens_computed +=
        std::max(0, std::min(s.num_prompt_tokens, s.num_computed + c.num_tokens) - s.num_computed);
    EngineSequence& es = *live_.at(s.seq_id);
    if (!es.cache_hit_counted) {  // first chunk ever: count the prefix-cache hit once
      es.cache_hit_counted = true;
      counters_.cached_prompt_tokens += s.num_cached_prompt_tokens;
    }
    f->step_seq_ids.push_back(s.seq_id);
  }
  scheduler_->on_computed(step.sched);
  for (EngineSequence* es : step.sampled) {
    Sequence& s = es->seq;
    f->row_seq_ids.push_back(s.seq_id);
    f->row_slots.push_back(s.total_tokens());
    f->row_logprobs.push_back(es->req->request.params.logprobs);
    s.tokens.push_back(kPlaceholderToken);
    // Its last token: no further step for it; its blocks are free for the next schedule
    // (which the device runs after this step).
    if (s.num_output_tokens() >= s.max_tokens) scheduler_->remove(&s);
  }
  inflight_ = std::move(f);
}

Engine::StepResults Engine::collect() {
  using Clock = std::chrono::steady_clock;
  // inflight_ stays set until the results are in: on a throw the caller fails its sequences.
  StepInFlight* f = inflight_.get();
  StepResults res;
  const size_t R = f->row_seq_ids.size();
  std::vector<int32_t> ids(R, 0);
  res.logprobs.resize(R);
  const Clock::time_point wait = Clock::now();
  if (f->device_sampled) {
    SampledTokens out;
    backend_->collect_sampled(&out);
    MIXSERVE_CHECK(out.ids.size() == R, "engine: the backend sampled ", out.ids.size(),
                   " tokens for ", R, " rows");
    counters_.forward_seconds += std::chrono::duration<double>(Clock::now() - wait).count();
    for (size_t r = 0, k = 0; r < R; ++r) {
      ids[r] = out.ids[r];
      const int32_t n = f->row_logprobs[r];
      if (n < 0) continue;
      std::span<const float> raw(out.raw_logits.data() + k++ * size_t(vocab_size_),
                                 size_t(vocab_size_));
      res.logprobs[r] = compute_logprobs(raw, ids[r], n);
    }
  } else {
    std::vector<int32_t> suppressed;
    for (size_t r = 0; r < R; ++r) {
      auto it = live_.find(f->row_seq_ids[r]);
      if (it == live_.end()) continue;  // ended while in flight: the row is dropped
      const EngineSequence& es = *it->second;
      const SamplingParams& p = es.req->request.params;
      std::span<float> row(logits_.data() + r * size_t(vocab_size_), size_t(vocab_size_));
      SampleResult sr = sample_token(row, p,
                                     sample_context(es.seq, f->row_slots[r], p, eos_ids_,
                                                    es.req->seed, es.sample_index, &suppressed));
      ids[r] = sr.id;
      res.logprobs[r] = std::move(sr.logprobs);
    }
  }
  last_collect_ = Clock::now();
  // The tokens into their sequences (the next step's placeholders read them at its launch).
  for (size_t r = 0; r < R; ++r) {
    auto it = live_.find(f->row_seq_ids[r]);
    if (it == live_.end()) continue;
    Sequence& s = it->second->seq;
    MIXSERVE_CHECK(size_t(f->row_slots[r]) < s.tokens.size() &&
                       s.tokens[size_t(f->row_slots[r])] == kPlaceholderToken,
                   "engine: no placeholder for the token of sequence ", s.seq_id);
    s.tokens[size_t(f->row_slots[r])] = ids[r];
  }
  res.row_seq_ids = std::move(f->row_seq_ids);
  res.row_slots = std::move(f->row_slots);
  inflight_.reset();
  return res;
}

void Engine::output(StepResults& results) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  // The previous step's text is done by now (it ran beside this step); a stop string in it
  // finishes its sequence here, and this step's token for that sequence is dropped.
  join_emitter();
  for (size_t r = 0; r < results.row_seq_ids.size(); ++r) {
    auto it = live_.find(results.row_seq_ids[r]);
    if (it != live_.end())
      postprocess(*it->second, results.row_slots[r], std::move(results.logprobs[r]));
  }
  emit_pending();
  counters_.output_seconds += std::chrono::duration<double>(Clock::now() - start).count();
}

void Engine::fail_sequences(const std::vector<int64_t>& seq_ids, const std::string& what) {
  log::error("engine: forward failed: ", what);
  join_emitter();  // the text already made goes out first; its late stops end as "stop"
  for (int64_t id : seq_ids) {
    auto it = live_.find(id);
    if (it != live_.end()) finish(*it->second, "error: " + what, StreamEvent{});
  }
}

bool Engine::step() {
  MIXSERVE_CHECK(!threaded_.load(),
                 "Engine::step: the loop thread is running; use submit() and the streams");
  return do_step();
}

// Without async scheduling: schedule, prepare, launch, collect, output. With it, the step in
// flight is collected only after the next one is prepared: schedule and prepare step n+1,
// collect step n, launch step n+1, output step n (while the device runs step n+1).
bool Engine::do_step() {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  admit_new_requests();
  handle_cancellations();
  ScheduleResult sched = scheduler_->schedule();
  counters_.preemptions += static_cast<int64_t>(sched.preempted.size());
  if (sched.empty() && !inflight_) {
    join_emitter();  // nothing runs: the last text goes out now
    last_collect_.reset();  // the device waits for work, not for the host
    publish_stats();
    return false;
  }
  const auto scheduled = Clock::now();
  counters_.schedule_seconds += std::chrono::duration<double>(scheduled - start).count();
  const bool run = !sched.empty();
  PreparedStep next;
  if (run) {
    next = prepare_step(std::move(sched));
    next.build_seconds = std::chrono::duration<double>(Clock::now() - scheduled).count();
  }
  std::optional<StepResults> done;
  if (inflight_) {  // async: the step in flight
    try {
      done = collect();
    } catch (const std::exception& e) {
      const std::vector<int64_t> failed = inflight_->step_seq_ids;
      inflight_.reset();
      fail_sequences(failed, e.what());
      if (run) {  // the next step without the failed sequences
        ScheduleResult kept;
        for (const ScheduledChunk& c : next.sched.chunks)
          if (live_.count(c.seq->seq_id)) kept.chunks.push_back(c);
        const double built = next.build_seconds;
        next = prepare_step(std::move(kept));
        next.build_seconds = built;
      }
    }
  }
  if (run && !next.sched.empty()) {
    ++counters_.steps;
    try {
      launch(next);
      if (!config_.async_scheduling) done = collect();
    } catch (const std::exception& e) {
      std::vector<int64_t> failed;
      for (const ScheduledChunk& c : next.sched.chunks) failed.push_back(c.seq->seq_id);
      inflight_.reset();
      if (done) output(*done);  // the step before (async) completed
      done.reset();
      fail_sequences(failed, e.what());
    }
  }
  if (done) output(*done);
  counters_.step_seconds += std::chrono::duration<double>(Clock::now() - start).count();
  publish_stats();
  return true;
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
  if (inflight_) {  // the backend finishes its step; its tokens are dropped
    try {
      collect();
    } catch (const std::exception& e) {
      log::error("engine: forward failed: ", e.what());
    }
    inflight_.reset();
  }
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
    const bool idle = !scheduler_->has_work() && live_.empty() && !inflight_;
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
