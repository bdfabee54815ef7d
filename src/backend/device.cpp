#include "backend/device.h"

#ifdef MIXSERVE_HAVE_CUDA
namespace mixserve::cuda {
int device_count_or_zero();  // backend/cuda/device_query.cu
}
#endif

namespace mixserve {

bool cuda_build_enabled() {
#ifdef MIXSERVE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef MIXSERVE_HAVE_CUDA
  return cuda::device_count_or_zero();
#else
  return 0;
#endif
}

}  // namespace mixserve
