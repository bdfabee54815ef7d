// What the three cuBLAS(Lt) wrappers share (cublaslt_gemm, cublaslt_batched_fp8,
// cublas_batched): the CUDA data type of a DType and a status check whose error names the call.
#pragma once

#include <library_types.h>

#include "model/dtype.h"

namespace mixserve::cuda {

// CUDA_R_16BF / 16F / 32F / 8F_E4M3; other dtypes throw mixserve::Error naming `who`.
cudaDataType_t cublas_data_type(DType t, const char* who);

// Throws mixserve::Error "<who>: <what> failed: <status name> (<status text>)" unless status
// (a cublasStatus_t, the same enum for cuBLAS and cuBLASLt) is success.
void check_cublas(int status, const char* who, const char* what);

}  // namespace mixserve::cuda
