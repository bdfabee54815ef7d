// What the three cuBLAS(Lt) wrappers share (cublaslt_gemm, cublaslt_batched_fp8,
// cublas_batched): the CUDA data type of a DType and a status check whose error names the call.
#pragma once

#include <cuda_runtime.h>
#include <library_types.h>

#include <cstddef>
#include <functional>

#include "model/dtype.h"

namespace mixserve::cuda {

// CUDA_R_16BF / 16F / 32F / 8F_E4M3; other dtypes throw mixserve::Error naming `who`.
cudaDataType_t cublas_data_type(DType t, const char* who);

// Throws mixserve::Error "<who>: <what> failed: <status name> (<status text>)" unless status
// (a cublasStatus_t, the same enum for cuBLAS and cuBLASLt) is success.
void check_cublas(int status, const char* who, const char* what);

// M's shape class for sharing a tuned GEMM algorithm: multiples of 64 up to 512, then powers
// of two.
int gemm_m_class(int M);

// Autotuning: times launch(i) for i in [0, n) on `stream` (one warm-up, then the median of
// three runs, CUDA events; a candidate whose warm-up launch fails is skipped) and returns the
// fastest index; *best_ms and *first_ms (candidate 0, the heuristic's choice) receive the
// times. launch returns a cublasStatus_t as int; stream must not be capturing.
size_t fastest_candidate(size_t n, const std::function<int(size_t)>& launch, cudaStream_t stream,
                         float* best_ms, float* first_ms);

}  // namespace mixserve::cuda
