// The partial sums a tensor-parallel rank all-reduces, carried in BF16 (MIXSERVE_TP_REDUCE=bf16):
// half the NVLink bytes of float32, the precision TensorRT-LLM and vLLM reduce in.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace mixserve::cuda {

// out[i] = bf16(x[i]) (round to nearest even), n elements; out is 2 * n bytes.
cudaError_t round_to_bf16(const float* x, void* out, size_t n, cudaStream_t stream);
// out[i] = float(in[i]).
cudaError_t widen_bf16(const void* in, float* out, size_t n, cudaStream_t stream);

}  // namespace mixserve::cuda
