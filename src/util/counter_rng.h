// The counter-based uniform draw of the sampler, shared by the host Sampler (engine/sampler.cpp)
// and the CUDA sampling kernels (backend/cuda/sampling.cuh), so both draw the same number for
// (seed, sample, step): one definition, compiled by the host compiler and by nvcc.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MIXSERVE_HOST_DEVICE __host__ __device__
#else
#define MIXSERVE_HOST_DEVICE
#endif

namespace mixserve {

MIXSERVE_HOST_DEVICE inline uint64_t splitmix64_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform double in [0, 1) for draw `step` of sample `sample_index` under `seed`.
MIXSERVE_HOST_DEVICE inline double counter_uniform_draw(uint64_t seed, int32_t sample_index,
                                                        int64_t step) {
  uint64_t h = splitmix64_mix(seed);
  h = splitmix64_mix(h ^ uint64_t(uint32_t(sample_index)));
  h = splitmix64_mix(h ^ uint64_t(step));
  return double(h >> 11) * 0x1.0p-53;  // 53 random bits
}

}  // namespace mixserve
