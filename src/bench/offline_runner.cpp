#include "bench/offline_runner.h"

#include <chrono>
#include <memory>
#include <string>

#include "bench/progress.h"
#include "util/error.h"

namespace mixserve::bench {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

Request to_request(const WorkloadItem& item, const std::string& id) {
  MIXSERVE_CHECK(!item.prompt_ids.empty(), "request ", id,
                 ": bench offline needs token-id prompts (a text dataset needs the model's "
                 "tokenizer)");
  Request r;
  r.id = id;
  r.prompt_ids = item.prompt_ids;
  r.params.max_tokens = item.output_len;
  r.params.temperature = 0.0f;
  r.params.ignore_eos = true;
  return r;
}

struct Live {
  std::shared_ptr<TokenStream> stream;
  size_t index;
  Clock::time_point last_token;
};

// Submits everything, then steps until every stream is finished. Returns the end time of the
// last request.
Clock::time_point drive(Engine& engine, const std::vector<WorkloadItem>& items,
                        const std::string& prefix, std::vector<RequestRecord>* records,
                        ProgressBar* progress, Clock::time_point* start) {
  std::vector<Live> live;
  live.reserve(items.size());
  *start = Clock::now();
  for (size_t i = 0; i < items.size(); ++i) {
    live.push_back({engine.submit(to_request(items[i], prefix + std::to_string(i))), i, {}});
  }
  Clock::time_point last_end = *start;
  int64_t done = 0;
  while (!live.empty()) {
    const bool worked = engine.step();
    const auto now = Clock::now();  // every token of this step arrived now
    for (size_t k = 0; k < live.size();) {
      Live& l = live[k];
      while (auto ev = l.stream->try_next()) {
        if (records == nullptr) continue;
        RequestRecord& r = (*records)[l.index];
        if (!ev->token_ids.empty()) {
          if (!r.has_first_token) {
            r.has_first_token = true;
            r.ttft_ms = ms_between(*start, now);
          } else {
            r.itl_ms.push_back(ms_between(l.last_token, now));
          }
          l.last_token = now;
          r.output_tokens += int64_t(ev->token_ids.size());
        }
        if (ev->finish_reason) {
          r.e2e_ms = ms_between(*start, now);
          r.input_tokens = int64_t(items[l.index].prompt_ids.size());
          const std::string& why = *ev->finish_reason;
          r.ok = (why == "length" || why == "stop");
          if (!r.ok) r.error = "engine: " + why;
        }
      }
      if (l.stream->finished()) {
        last_end = now;
        ++done;
        live[k] = std::move(live.back());
        live.pop_back();
      } else {
        ++k;
      }
    }
    if (progress) progress->update(done);
    MIXSERVE_CHECK(worked || live.empty(), "the engine stopped with ", live.size(),
                   " requests unfinished");
  }
  return last_end;
}

}  // namespace

OfflineResult run_offline(Engine& engine, const std::vector<WorkloadItem>& warmup,
                          const std::vector<WorkloadItem>& items, ProgressBar* progress) {
  Clock::time_point start;
  if (!warmup.empty()) drive(engine, warmup, "warmup-", nullptr, nullptr, &start);
  const EngineStats before = engine.stats();
  OfflineResult result;
  result.records.resize(items.size());
  const Clock::time_point end = drive(engine, items, "req-", &result.records, progress, &start);
  result.duration_s = std::chrono::duration<double>(end - start).count();
  // Counters of the measured run only.
  result.stats = engine.stats();
  result.stats.steps -= before.steps;
  result.stats.tokens_computed -= before.tokens_computed;
  result.stats.prompt_tokens_computed -= before.prompt_tokens_computed;
  result.stats.cached_prompt_tokens -= before.cached_prompt_tokens;
  result.stats.generated_tokens -= before.generated_tokens;
  result.stats.preemptions -= before.preemptions;
  result.stats.requests_finished -= before.requests_finished;
  result.stats.step_seconds -= before.step_seconds;
  result.stats.forward_seconds -= before.forward_seconds;
  result.stats.schedule_seconds -= before.schedule_seconds;
  result.stats.plan_seconds -= before.plan_seconds;
  result.stats.output_seconds -= before.output_seconds;
  result.stats.launch_gap_seconds -= before.launch_gap_seconds;
  result.stats.launch_gaps -= before.launch_gaps;
  if (progress) {
    progress->update(int64_t(items.size()));
    progress->finish();
  }
  return result;
}

}  // namespace mixserve::bench
