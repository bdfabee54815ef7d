#include "backend/cuda/interval_timer.h"

#include <cstdio>

#include "backend/cuda/cuda_check.h"

namespace mixserve::cuda {

IntervalTimer::~IntervalTimer() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

void IntervalTimer::enable() { enabled_ = true; }

cudaEvent_t IntervalTimer::event(size_t i) {
  while (events_.size() <= i) {
    cudaEvent_t e = nullptr;
    MIXSERVE_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  return events_[i];
}

void IntervalTimer::collect() {
  if (!pending_) return;
  pending_ = false;
  MIXSERVE_CUDA_CHECK(cudaEventSynchronize(events_[1]));
  float ms = 0;
  MIXSERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[0], events_[1]));
  step_ms_ += ms;
  ++steps_;
  for (size_t i = 2; i + 1 < used_; i += 2) {
    MIXSERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
    interval_ms_ += ms;
    ++calls_;
  }
}

void IntervalTimer::begin_step(cudaStream_t stream) {
  if (!enabled_) return;
  collect();
  MIXSERVE_CUDA_CHECK(cudaEventRecord(event(0), stream));
  used_ = 2;
  in_step_ = true;
}

void IntervalTimer::end_step(cudaStream_t stream) {
  if (!enabled_ || !in_step_) return;
  MIXSERVE_CUDA_CHECK(cudaEventRecord(event(1), stream));
  in_step_ = false;
  pending_ = true;
}

void IntervalTimer::before(cudaStream_t stream) {
  if (!enabled_ || !in_step_) return;
  MIXSERVE_CUDA_CHECK(cudaEventRecord(event(used_), stream));
}

void IntervalTimer::after(cudaStream_t stream) {
  if (!enabled_ || !in_step_) return;
  MIXSERVE_CUDA_CHECK(cudaEventRecord(event(used_ + 1), stream));
  used_ += 2;
}

std::string IntervalTimer::summary() {
  collect();
  char buf[300];
  std::snprintf(buf, sizeof buf, "%lld eager steps: %lld %s took %.1f ms of %.1f ms forward (%.1f%%)",
                static_cast<long long>(steps_), static_cast<long long>(calls_), what_.c_str(),
                interval_ms_, step_ms_, step_ms_ > 0 ? 100.0 * interval_ms_ / step_ms_ : 0.0);
  return buf;
}

}  // namespace mixserve::cuda
