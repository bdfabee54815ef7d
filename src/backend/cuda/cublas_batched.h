// Pointer-array batched GEMM (cuBLAS cublasGemmBatchedEx) for the decode-sized MoE path: the
// operands of each batch entry are read from device arrays that a kernel fills from the
// routing, so the host never needs to know which experts are in use (no sync; capturable in
// a CUDA graph). Same layout as CublasLtGemm: y[M, N] = x[M, K] · w[N, K]^T, row-major.
#pragma once

#include <cuda_runtime.h>

#include "model/dtype.h"

namespace mixserve::cuda {

class CublasBatched {
 public:
  // workspace_bytes: cuBLAS's scratch, set up front so that graph capture allocates nothing.
  explicit CublasBatched(size_t workspace_bytes = size_t{8} << 20);
  ~CublasBatched();
  CublasBatched(const CublasBatched&) = delete;
  CublasBatched& operator=(const CublasBatched&) = delete;

  // For b in [0, batch): y[b] [M, N] = x[b] [M, K] · w[b] [N, K]^T. x, w, y: device arrays of
  // `batch` device pointers. `in` is kBF16 or kF16, `out` is `in` or kF32. Throws
  // mixserve::Error naming the shape when cuBLAS fails.
  void matmul(const void* const* x, const void* const* w, void* const* y, int M, int N, int K,
              int batch, DType in, DType out, cudaStream_t stream);

 private:
  void* handle_ = nullptr;  // cublasHandle_t
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

}  // namespace mixserve::cuda
