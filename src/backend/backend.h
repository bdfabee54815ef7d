// Backend: runs the model on one BatchPlan. The engine loop owns it; nothing else calls it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend/batch_plan.h"
#include "backend/sampling_batch.h"
#include "model/config.h"

namespace mixserve {

struct KvCacheSpec {
  int32_t num_blocks = 0;
  int32_t block_size = 16;  // tokens per block
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::string name() const = 0;  // "cpu", "cuda:0 (NVIDIA H100 ...)"

  // Bytes one cached token takes (all layers, K and V), to size the cache from a budget.
  virtual size_t kv_bytes_per_token() const = 0;
  // (Re)allocates the paged KV cache. Contents are undefined afterwards.
  virtual void allocate_kv_cache(const KvCacheSpec& spec) = 0;
  virtual KvCacheSpec kv_cache_spec() const = 0;

  // Computes the step: writes K/V of every token of the plan into its slot, and the logits
  // (float32, log-softmax NOT applied) of plan.logits_rows into logits_out[R * V].
  virtual void forward(const BatchPlan& plan, std::span<float> logits_out) = 0;

  // Backends that can pick tokens on their own device (the CUDA backend) say so here; the
  // engine then calls forward_and_sample instead of forward, and logits stay on the device
  // unless a row asks for log-probabilities. The semantics are the host Sampler's
  // (engine/sampler.h): batch.rows[r] is the sampling of plan.logits_rows[r].
  virtual bool supports_device_sampling() const { return false; }
  virtual void forward_and_sample(const BatchPlan& plan, const SamplingBatch& batch,
                                  SampledTokens* out);

  // forward_and_sample in two halves, so that the engine can prepare the next step while the
  // device computes this one: submit_and_sample enqueues the step (it may return before the
  // device is done; plan and batch may be destroyed once it returns), collect_sampled waits
  // for it and hands the tokens over. At most one step is in flight: every submit is
  // collected before the next. The defaults run forward_and_sample inside the submit.
  virtual void submit_and_sample(const BatchPlan& plan, const SamplingBatch& batch);
  virtual void collect_sampled(SampledTokens* out);

  // Counters since construction, for benchmark reports (name, value): e.g. the CUDA
  // backend's MoE layers by path and their padding. Read while no step is in flight.
  virtual std::vector<std::pair<std::string, double>> counters() const { return {}; }

 private:
  SampledTokens submitted_;  // the defaults' result between submit and collect
  bool in_flight_ = false;
};

}  // namespace mixserve
