#include "backend/cuda/sampling.cuh"

namespace mixserve::cuda {

cudaError_t apply_penalties(float* logits, int R, int V, const SamplingRow* rows,
                            const int32_t* offsets, const PenaltyEntry* entries,
                            cudaStream_t stream) {
  if (R <= 0) return cudaSuccess;
  apply_penalties_kernel<<<R, 256, 0, stream>>>(logits, V, rows, offsets, entries);
  return cudaGetLastError();
}

cudaError_t sample_rows(const float* logits, int R, int V, const SamplingRow* rows, int32_t* ids,
                        cudaStream_t stream) {
  if (R <= 0) return cudaSuccess;
  if (V <= 0 || V > (1 << 20)) return cudaErrorInvalidValue;
  sample_rows_kernel<<<R, kSampleThreads, 0, stream>>>(logits, V, rows, ids);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
