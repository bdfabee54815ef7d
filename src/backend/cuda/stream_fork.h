// Fork and join of side streams around work that runs on several streams at once (the MoE
// lanes' per-expert GEMMs, the counted MoE's concurrent tiers): side[1..n) wait for what `main`
// has enqueued so far; later `main` waits for everything enqueued on side[1..n). side[0] is
// not used (its work runs on `main`); events[0] marks the fork, events[i] side stream i's end.
#pragma once

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"

namespace mixserve::cuda {

inline void fork_streams(cudaStream_t main, const cudaStream_t* side, cudaEvent_t* events, int n) {
  if (n <= 1) return;
  MIXSERVE_CUDA_CHECK(cudaEventRecord(events[0], main));
  for (int i = 1; i < n; ++i) MIXSERVE_CUDA_CHECK(cudaStreamWaitEvent(side[i], events[0], 0));
}

inline void join_streams(cudaStream_t main, const cudaStream_t* side, cudaEvent_t* events, int n) {
  for (int i = 1; i < n; ++i) {
    MIXSERVE_CUDA_CHECK(cudaEventRecord(events[i], side[i]));
    MIXSERVE_CUDA_CHECK(cudaStreamWaitEvent(main, events[i], 0));
  }
}

}  // namespace mixserve::cuda
