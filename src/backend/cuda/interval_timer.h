// Device time of some intervals inside eager forward passes, with CUDA events, against the
// passes' own time. Two uses (cuda_backend.cpp):
//   MIXSERVE_COMM_TIMING=1: a tensor / expert parallel shard's all-reduces (the wait for the
//     slower rank included), to judge whether overlapping them with compute pays;
//   MIXSERVE_SYNC_TIMING=1: the MoE's expert-count read-back, from the end of the sort to the
//     first work enqueued after the host has the counts (the GPU idles meanwhile).
// Steps replayed from CUDA graphs are not timed.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mixserve::cuda {

class IntervalTimer {
 public:
  explicit IntervalTimer(std::string what) : what_(std::move(what)) {}
  IntervalTimer(const IntervalTimer&) = delete;
  IntervalTimer& operator=(const IntervalTimer&) = delete;
  ~IntervalTimer();

  void enable();  // on the backend's device
  bool enabled() const { return enabled_; }
  // Around one eager forward pass on `stream`: begin() folds the previous step into the sums.
  void begin_step(cudaStream_t stream);
  void end_step(cudaStream_t stream);
  // Around one interval inside the step.
  void before(cudaStream_t stream);
  void after(cudaStream_t stream);
  // "N eager steps: M <what> took X ms of Y ms forward (Z%)", after folding the last step in.
  std::string summary();

 private:
  void collect();
  cudaEvent_t event(size_t i);

  std::string what_;
  bool enabled_ = false, in_step_ = false, pending_ = false;
  std::vector<cudaEvent_t> events_;  // [0, 1]: the step; then before/after pairs
  size_t used_ = 0;
  double interval_ms_ = 0, step_ms_ = 0;
  int64_t steps_ = 0, calls_ = 0;
};

}  // namespace mixserve::cuda
