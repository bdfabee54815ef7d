// The offline runner of `mixserve bench offline`: every request is submitted to an in-process
// engine at once, and this thread drives the engine's steps itself, timestamping each token as
// the step that made it returns. No HTTP, no tokenizer: prompts are token ids.
#pragma once

#include <vector>

#include "bench/run_metrics.h"
#include "bench/workload.h"
#include "engine/engine.h"

namespace mixserve::bench {

class ProgressBar;

struct OfflineResult {
  std::vector<RequestRecord> records;  // one per measured item, in order
  double duration_s = 0.0;             // submission to the last request's end
  EngineStats stats;                   // counters of the measured run (warm-up subtracted)
};

// Runs `warmup` first (unmeasured, to completion), then `items`. Every request is greedy with
// ignore_eos and max_tokens = output_len, so output lengths are exact. The engine must not
// have a loop thread running (start() not called).
OfflineResult run_offline(Engine& engine, const std::vector<WorkloadItem>& warmup,
                          const std::vector<WorkloadItem>& items, ProgressBar* progress);

}  // namespace mixserve::bench
