// Engine: in-flight batching over a paged KV cache.
//
// One loop thread owns the scheduler, the block manager and the backend. Every step:
//   schedule (which sequences, how many tokens each) -> BatchPlan -> Backend::forward
//   -> sample -> postprocess (append, detokenize, stop conditions, emit, free).
// Other threads only submit() requests and read the TokenStream they get back.
//
// Without start() no thread runs and the owner drives step() itself (tests, the CLI's
// generate); with start() the loop sleeps until work arrives.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "engine/request.h"
#include "engine/token_stream.h"
#include "tokenizer/tokenizer.h"
#include "util/background_worker.h"

namespace mixserve {

struct EngineConfig {
  int32_t block_size = 16;              // --block-size: tokens per KV block
  int32_t num_kv_blocks = 0;            // 0 = from kv_cache_tokens
  int64_t kv_cache_tokens = 0;          // --kv-cache-tokens; 0 (and no blocks) = the default
  int32_t max_num_seqs = 256;           // --max-num-seqs: sequences per step
  int32_t max_num_batched_tokens = 2048;  // --max-num-batched-tokens: tokens per step
  int32_t max_model_len = 0;            // 0 = the model's max_position_embeddings; capped at
                                        // the cache size
  bool enable_prefix_caching = true;    // --no-prefix-caching turns it off
  std::string scheduler_policy = "fcfs";  // "fcfs" (preempting) or "no-evict"
  // Schedule and plan step n+1 while the backend computes step n (--no-async-scheduling
  // turns it off in the CLI, where it is on by default). The next step is planned with a
  // placeholder for each token still being sampled, filled in when step n's tokens arrive;
  // only that fill-in and the submission stay between two device steps. A sequence that
  // step n finishes (EOS, stop id, stop string) has its row in step n+1 computed in vain and
  // dropped; one that reaches max_tokens is known in advance and not scheduled again.
  bool async_scheduling = false;

  static constexpr int64_t kDefaultKvCacheTokens = 16384;
};

// Counters since start; a consistent snapshot, safe to read from any thread.
struct EngineStats {
  int64_t steps = 0;
  int64_t tokens_computed = 0;          // every token the model computed (recomputes included)
  int64_t prompt_tokens_computed = 0;   // of which prompt tokens
  int64_t cached_prompt_tokens = 0;     // prompt tokens taken from the prefix cache instead
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t requests_finished = 0;
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_kv_blocks = 0;
  int32_t num_free_kv_blocks = 0;
  float kv_usage = 0.0f;                // fraction of blocks in use
  // Wall time of the steps that ran (admission, scheduling, plan, model, sampling, output)
  // and the part of it spent inside the backend's forward call; the difference is the host's
  // share that the device does not overlap.
  double step_seconds = 0.0;
  double forward_seconds = 0.0;
  // The host's parts of those steps: admission, cancellations and scheduling; the plan and the
  // sampling inputs; after the forward, the tokens' bookkeeping (stop conditions, finishes,
  // handing the output to the emitter, waiting for the previous step's).
  double schedule_seconds = 0.0;
  double plan_seconds = 0.0;
  double output_seconds = 0.0;
  // Host time on the device's critical path: from one step's results coming back to the next
  // step's submission, for steps that were ready to go (not waiting for requests). Without
  // async scheduling it is the output + schedule + plan of every step; with it, only the
  // placeholders' fill-in and the sampling inputs.
  double launch_gap_seconds = 0.0;
  int64_t launch_gaps = 0;  // steps counted in launch_gap_seconds
};

struct SampleOutput {
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<TokenLogprobs> logprobs;
  std::string finish_reason;
  Usage usage;
};

struct GenerateResult {
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  std::vector<SampleOutput> samples;  // n of them
};

class Scheduler;
class BlockManager;
struct EngineSequence;
struct EngineRequestState;
struct ScheduleResult;

class Engine {
 public:
  // tokenizer may be null: then no text is produced (and stop strings never match), and EOS
  // ids come from the model config.
  Engine(std::unique_ptr<Backend> backend, std::shared_ptr<const Tokenizer> tokenizer,
         EngineConfig config);
  ~Engine();  // shutdown(false)
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Thread-safe. Throws mixserve::Error for invalid parameters, token ids outside the
  // vocabulary, a request that can never fit, or after shutdown.
  std::shared_ptr<TokenStream> submit(Request request);
  void abort(const std::string& request_id);  // as cancel() on its stream

  void start();  // runs the loop on its own thread
  // Stops accepting requests; drain = finish what was submitted, else abort it. Joins.
  void shutdown(bool drain);
  // One step, when no loop thread runs. Returns false if there was nothing to do.
  bool step();
  // Submits, runs to completion (driving step() if no loop thread runs), collects.
  std::vector<GenerateResult> generate(std::vector<Request> requests);

  EngineStats stats() const;
  int32_t max_model_len() const { return max_model_len_; }
  int32_t num_kv_blocks() const { return num_blocks_; }
  // The backend's counters (Backend::counters); call while no request is being served.
  std::vector<std::pair<std::string, double>> backend_counters() const {
    return backend_->counters();
  }
  const EngineConfig& config() const { return config_; }

 private:

  bool do_step();
  void loop();
  void admit_new_requests();
  void handle_cancellations();
  // A step: prepared (plan built, placeholders to fill), submitted (in flight), its results
  // collected (tokens written into their sequences), then output (stop conditions, streams).
  struct PreparedStep;
  struct StepInFlight;
  struct StepResults;
  PreparedStep prepare_step(ScheduleResult sched);
  // Fills the placeholders, submits; then commits the chunks and appends the placeholders of
  // the tokens it samples. Throws if the backend does (nothing was committed then).
  void launch(PreparedStep& step);
  StepResults collect();  // inflight_'s results; throws if the backend does
  void output(StepResults& results);
  // Ends every live sequence of seq_ids with the backend's error.
  void fail_sequences(const std::vector<int64_t>& seq_ids, const std::string& what);
  // slot: the index of the token in es.seq.tokens (already written there).
  void postprocess(EngineSequence& es, int32_t slot, TokenLogprobs lp);
  // keep >= 0: the sequence's tokens are cut to that many first (tokens computed past a stop);
  // otherwise only trailing placeholders go.
  void finish(EngineSequence& es, const std::string& reason, StreamEvent event,
              int32_t keep = -1);
  // Hands the step's text work (pending_) to the emitter thread.
  void emit_pending();
  // Waits for the emitter, then finishes the sequences whose text met a stop string.
  void join_emitter();
  void abort_all(const std::string& reason);
  void publish_stats();

  EngineConfig config_;
  std::unique_ptr<Backend> backend_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  int32_t vocab_size_ = 0;
  int32_t num_blocks_ = 0;
  int32_t max_model_len_ = 0;
  std::vector<int32_t> eos_ids_;

  // Loop-thread state.
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unordered_map<int64_t, std::unique_ptr<EngineSequence>> live_;
  int64_t next_seq_id_ = 0;
  std::vector<float> logits_;  // [R * V]
  EngineStats counters_;
  std::unique_ptr<StepInFlight> inflight_;  // submitted, not yet collected (async scheduling)
  // When the last results came back, while the next step may be waiting on the host.
  std::optional<std::chrono::steady_clock::time_point> last_collect_;

  // Shared with submitters.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<EngineRequestState>> inbox_;
  std::unordered_map<std::string, std::weak_ptr<TokenStream>> streams_;
  bool accepting_ = true;
  bool stopping_ = false;
  bool drain_ = false;
  EngineStats published_;
  std::atomic<bool> threaded_{false};
  std::thread thread_;

  // Output off the loop thread: a step's tokens become text (incremental detokenization, stop
  // strings) and stream events (each a lock and a wake-up of the reader) on the emitter while
  // the loop schedules and runs the next step, so the device does not wait for them. A stop string met there finishes its sequence
  // after that next step (whose token for it is dropped): one token computed in vain. Every
  // finish() waits for the emitter first, so the sequences it reads stay alive.
  struct PendingText;
  std::vector<PendingText> pending_;                        // this step's, for the emitter
  struct LateStop {
    int64_t seq_id = 0;
    StreamEvent event;
    int32_t keep = 0;  // tokens up to and including the one that met the stop string
  };
  std::vector<LateStop> late_stops_;  // the emitter's
  BackgroundWorker emitter_;  // last: joined before the members it uses go away
};

}  // namespace mixserve
