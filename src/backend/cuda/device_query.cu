// Device discovery that never throws: a machine without a driver or GPU reports 0 devices.
#include <cuda_runtime.h>

namespace mixserve::cuda {

int device_count_or_zero() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace mixserve::cuda
