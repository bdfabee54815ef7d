// Device time of a tensor / expert parallel shard's all-reduces, per eager step, with CUDA
// events (MIXSERVE_COMM_TIMING=1): how much of the forward pass the collectives take (the
// wait for the slower rank included), to judge whether overlapping them with compute pays.
// Steps replayed from CUDA graphs are not timed.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mixserve::cuda {

class CommTimer {
 public:
  CommTimer() = default;
  CommTimer(const CommTimer&) = delete;
  CommTimer& operator=(const CommTimer&) = delete;
  ~CommTimer();

  void enable();  // on the backend's device
  bool enabled() const { return enabled_; }
  // Around one eager forward pass on `stream`: begin() folds the previous step into the sums.
  void begin_step(cudaStream_t stream);
  void end_step(cudaStream_t stream);
  // Around one all-reduce inside the step.
  void before(cudaStream_t stream);
  void after(cudaStream_t stream);
  // "N steps: all-reduce X ms of Y ms (Z%)", after folding the last step in.
  std::string summary();

 private:
  void collect();
  cudaEvent_t event(size_t i);

  bool enabled_ = false, in_step_ = false, pending_ = false;
  std::vector<cudaEvent_t> events_;  // [0, 1]: the step; then before/after pairs
  size_t used_ = 0;
  double comm_ms_ = 0, step_ms_ = 0;
  int64_t steps_ = 0, calls_ = 0;
};

}  // namespace mixserve::cuda
