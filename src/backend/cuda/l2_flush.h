// Cache eviction for kernel benchmarks (bench-kernels): reads a buffer larger than the L2 so
// the next timed launch finds none of its inputs cached, and no dirty lines left by the
// previous launch (or by a memset used as a flush) to write back while it runs.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace mixserve::cuda {

// Reads buf[0, bytes) (16-byte aligned, bytes % 16 == 0) and writes nothing but, where the
// XOR of all its words is 0x5eed5eed, that value to *sink (so the reads are not optimized
// away). sink: one uint32 of device memory.
cudaError_t read_through(const void* buf, size_t bytes, uint32_t* sink, cudaStream_t stream);

}  // namespace mixserve::cuda
