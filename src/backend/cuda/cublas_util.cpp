#include "backend/cuda/cublas_util.h"

#include <cublasLt.h>

#include "util/error.h"

namespace mixserve::cuda {

cudaDataType_t cublas_data_type(DType t, const char* who) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kF8E4M3:
      return CUDA_R_8F_E4M3;
    default:
      throw_error(who, ": unsupported dtype ", dtype_name(t));
  }
}

void check_cublas(int status, const char* who, const char* what) {
  const auto st = static_cast<cublasStatus_t>(status);
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw_error(who, ": ", what, " failed: ", cublasLtGetStatusName(st), " (",
                cublasLtGetStatusString(st), ")");
  }
}

}  // namespace mixserve::cuda
