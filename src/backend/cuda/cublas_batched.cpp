#include "backend/cuda/cublas_batched.h"

#include <cublas_v2.h>

#include "backend/cuda/cublas_util.h"
#include "backend/cuda/cuda_check.h"
#include "util/error.h"

namespace mixserve::cuda {
namespace {

cudaDataType_t cuda_type(DType t) { return cublas_data_type(t, "cuBLAS batched GEMM"); }

void check(cublasStatus_t st, const char* what) { check_cublas(st, "cuBLAS", what); }

}  // namespace

CublasBatched::CublasBatched(size_t workspace_bytes) : workspace_bytes_(workspace_bytes) {
  cublasHandle_t h = nullptr;
  check(cublasCreate(&h), "cublasCreate");
  handle_ = h;
  MIXSERVE_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  check(cublasSetWorkspace(h, workspace_, workspace_bytes_), "cublasSetWorkspace");
}

CublasBatched::~CublasBatched() {
  if (handle_) cublasDestroy(static_cast<cublasHandle_t>(handle_));
  if (workspace_) cudaFree(workspace_);
}

void CublasBatched::matmul(const void* const* x, const void* const* w, void* const* y, int M, int N,
                           int K, int batch, DType in, DType out, cudaStream_t stream) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  auto h = static_cast<cublasHandle_t>(handle_);
  check(cublasSetStream(h, stream), "cublasSetStream");
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major: Y^T [N, M] = W^T' [N, K] (row-major w is col-major [K, N], transposed)
  //                            · X^T [K, M] (row-major x is col-major [K, M]).
  const cublasStatus_t st = cublasGemmBatchedEx(
      h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, cuda_type(in), K, x, cuda_type(in), K, &beta,
      y, cuda_type(out), N, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw_error("cuBLAS: batched GEMM ", batch, " x [", M, " x ", K, "] x [", N, " x ", K, "]^T (",
                dtype_name(in), " -> ", dtype_name(out), ") failed: ", cublasGetStatusName(st));
  }
}

}  // namespace mixserve::cuda
