// MoE lanes: the per-expert GEMMs of a large MoE step (more than moe_padded_max_rows pairs, the
// expert counts read back) run on up to CublasLtGemm::kMaxLanes streams at once. One expert's
// GEMM at decode sizes (~256 rows) fills only part of the GPU — w2's [256, 4096] output is 64
// tiles of 128 x 128 for 132 SMs — so running experts side by side fills the idle SMs and
// overlaps each GEMM's ramp-up and tail with another's (docs/perf/NOTES.md).
#include <algorithm>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/stream_fork.h"

namespace mixserve::cuda {

int CudaBackend::moe_lanes(int active_experts) const {
  return std::max(1, std::min(max_moe_lanes_, active_experts));
}

void CudaBackend::fork_lanes(int lanes) {
  fork_streams(stream_, lanes_.data(), lane_events_.data(), lanes);
}

void CudaBackend::join_lanes(int lanes) {
  join_streams(stream_, lanes_.data(), lane_events_.data(), lanes);
}

}  // namespace mixserve::cuda
