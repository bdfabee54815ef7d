// Device sampling launchers (kernels in sampling.cuh): the host Sampler's semantics
// (engine/sampler.h) on float32 logits rows that never leave the device.
//
// Shapes: R = rows, V = vocabulary. logits: [R, V] float32 (modified in place by the
// penalties); rows: [R]; offsets: [R+1] into entries; ids: [R]. All device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/sampling_batch.h"

namespace mixserve::cuda {

// Repetition penalty on kInHistory entries (positive logits divided, negative multiplied),
// then presence + frequency * count on entries with output_count > 0, then -inf on
// kSuppressed entries: sample_token's apply_penalties + suppression, per entry.
cudaError_t apply_penalties(float* logits, int R, int V, const SamplingRow* rows,
                            const int32_t* offsets, const PenaltyEntry* entries,
                            cudaStream_t stream);

// One token per row: temperature 0 -> argmax (ties to the lowest id); otherwise top-k,
// top-p, min-p over the candidates ordered by (logit descending, id ascending) and a draw of
// counter_uniform_draw(seed, sample_index, draw_index), as sample_token. Probabilities are
// summed in 2^-43 fixed point (order-free, deterministic); they can differ from the host's
// double sums by ~1e-13 relative, which moves a choice only within rounding of a boundary.
cudaError_t sample_rows(const float* logits, int R, int V, const SamplingRow* rows, int32_t* ids,
                        cudaStream_t stream);

}  // namespace mixserve::cuda
