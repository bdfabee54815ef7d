// Which devices this build and this machine offer: used by --device auto.
#pragma once

namespace mixserve {

bool cuda_build_enabled();
// Number of usable CUDA devices; 0 when the build has no CUDA or no driver/GPU is present.
int cuda_device_count();

}  // namespace mixserve
