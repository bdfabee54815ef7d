// SiLU(gate) * up -> FP8 rows for large row counts: a persistent kernel (one block an SM) that
// streams whole gate|up rows into shared memory with Hopper's bulk async copy
// (cp.async.bulk, completion on an mbarrier), `stages` rows deep. While the block computes
// row i from shared memory, rows i+1 .. i+stages-1 are in flight, so the loads never wait
// for the math or the row's amax reduction, which in the register kernel
// (silu_mul_fp8_vec_kernel) stall the memory pipe of a block between its rows.
// Same float math per element as silu_mul_fp8_vec_kernel.
#pragma once

#include "backend/cuda/fp8_quant.cuh"

namespace mixserve::cuda {

constexpr int kSiluBulkThreads = 896, kSiluBulkMaxStages = 3;
// Whether silu_mul_fp8 takes this kernel where it applies (large steps).
constexpr bool kSiluFp8Bulk = true;

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void bulk_row_load(void* dst, const void* src, unsigned bytes,
                                              uint64_t* bar) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)),
               "r"(bytes)
               : "memory");
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
          "r"(smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(smem_u32(bar))
      : "memory");
}

__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n"
      "}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}

// gate_up: [n, 2F] (16-byte aligned rows); q: [n, F]; scales: padded (fp8_kernels.h).
// Dynamic shared memory: stages * 4F bytes (F % 8 == 0). Block b handles rows b, b + grid, ...
template <typename T, int kChunks, bool kUnscaled>
__global__ void __launch_bounds__(kSiluBulkThreads, 1)
    silu_mul_fp8_bulk_kernel(const T* __restrict__ gate_up, int n, int F, int stages,
                             uint8_t* __restrict__ q, float* __restrict__ scales,
                             const int32_t* offsets, int E, const float* __restrict__ in_row,
                             const float* __restrict__ in_col) {
  extern __shared__ __align__(128) uint8_t rows[];
  __shared__ __align__(8) uint64_t bars[kSiluBulkMaxStages];
  const unsigned row_bytes = 4u * static_cast<unsigned>(F);
  const int chunks = F / 8;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&bars[s])) : "memory");
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    for (int s = 0; s < stages; ++s) {
      const int64_t r = blockIdx.x + int64_t{s} * gridDim.x;
      if (r < n) bulk_row_load(rows + s * row_bytes, gate_up + r * 2 * F, row_bytes, &bars[s]);
    }
  }
  __syncthreads();
  int it = 0;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x, ++it) {
    const int s = it % stages;
    mbarrier_wait(&bars[s], static_cast<unsigned>(it / stages) & 1u);
    const uint4* g = reinterpret_cast<const uint4*>(rows + s * row_bytes);
    const uint4* u = g + chunks;
    const float rs = kUnscaled ? in_row[r] : 1.0f;
    float v[kChunks][8];
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int i = c * kSiluBulkThreads + threadIdx.x;
      if (i < chunks) {
        const uint4 gv = g[i], uv = u[i];
        const T* gt = reinterpret_cast<const T*>(&gv);
        const T* ut = reinterpret_cast<const T*>(&uv);
        float gc[8], uc[8];
        if constexpr (kUnscaled) {
          const float4* cg = reinterpret_cast<const float4*>(in_col + 8 * i);
          const float4* cu = reinterpret_cast<const float4*>(in_col + F + 8 * i);
          *reinterpret_cast<float4*>(gc) = cg[0];
          *reinterpret_cast<float4*>(gc + 4) = cg[1];
          *reinterpret_cast<float4*>(uc) = cu[0];
          *reinterpret_cast<float4*>(uc + 4) = cu[1];
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          float a = to_float(gt[j]), b = to_float(ut[j]);
          if constexpr (kUnscaled) {
            a *= rs * gc[j];
            b *= rs * uc[j];
          }
          v[c][j] = a / (1.0f + expf(-a)) * b;
          amax = fmaxf(amax, fabsf(v[c][j]));
        }
      }
    }
    // Its barriers also order every thread's reads of stage s before the refill below.
    const float2 si = fp8_row_scale(block_reduce_any<true>(amax));
    if (threadIdx.x == 0) {
      const int64_t next = r + int64_t{stages} * gridDim.x;
      if (next < n) {
        bulk_row_load(rows + s * row_bytes, gate_up + next * 2 * F, row_bytes, &bars[s]);
      }
      scales[padded_row(r, offsets, E)] = si.x;
    }
    uint2* d = reinterpret_cast<uint2*>(q + r * F);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int i = c * kSiluBulkThreads + threadIdx.x;
      if (i < chunks) d[i] = pack_e4m3x8(v[c], si.y);
    }
  }
}

}  // namespace mixserve::cuda
