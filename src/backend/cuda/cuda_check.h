// Turns a failed CUDA runtime call into a mixserve::Error naming the call, the file and the line.
// Used at the backend boundary (host code); kernels' launchers return cudaError_t instead.
#pragma once

#include <cuda_runtime.h>

#include "util/error.h"

namespace mixserve::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file,
                                          int line) {
  throw_error("CUDA error at ", file, ":", line, ": ", call, " failed: ", cudaGetErrorName(err),
              " (", cudaGetErrorString(err), ")");
}

}  // namespace mixserve::cuda

#define MIXSERVE_CUDA_CHECK(call)                                                        \
  do {                                                                                   \
    const cudaError_t mixserve_cuda_err_ = (call);                                       \
    if (mixserve_cuda_err_ != cudaSuccess) {                                             \
      ::mixserve::cuda::throw_cuda_error(mixserve_cuda_err_, #call, __FILE__, __LINE__); \
    }                                                                                    \
  } while (0)
