// Hopper warpgroup matrix-multiply primitives (wgmma, sm_90a) for the prefill attention kernel
// (attention_prefill_wgmma.cuh): shared-memory matrix descriptors for 128-byte-swizzled
// tiles, m64n128k16 products with A from shared memory or from registers, and the fences.
//
// Tile layout (sw128_offset): a [R, 128] half tile is two column halves of 64 elements, each
// R rows x 128 bytes, row r's 16-byte chunk c at chunk position c ^ (r % 8): the canonical
// 128-byte-swizzle layout of wgmma (8-row atoms of 1,024 bytes, 1,024-aligned). Read as
// K-major (rows = M or N, columns = K) for Q and K, and as MN-major (rows = K, columns = N) for
// V: the same bytes serve both, so K and V tiles are loaded the same way.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/cuda/dtype_traits.cuh"

namespace mixserve::cuda {

// The 64 accumulator operands %0..%63 of an m64n128 wgmma (one thread's share of 64 x 128).
#define MIXSERVE_WG_ACC64                                                            \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "           \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define MIXSERVE_WG_OUT64(d)                                                                      \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),    \
      "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),  \
      "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),  \
      "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),  \
      "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),  \
      "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),  \
      "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),  \
      "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])

// Byte offset of 16-byte chunk `chunk` (0..15) of row `row` in a [kRows, 128] half tile.
template <int kRows>
__device__ __forceinline__ uint32_t sw128_offset(int row, int chunk) {
  return static_cast<uint32_t>((chunk >> 3) * kRows * 128 + row * 128 +
                               (((chunk & 7) ^ (row & 7)) << 4));
}

// Shared-memory matrix descriptor: start address, leading / stride byte offsets (all >> 4),
// base offset 0 (atoms 1,024-aligned), layout 1 = 128-byte swizzle (bits 62-63).
__device__ __forceinline__ uint64_t wg_desc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo) {
  return static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4) |
         (static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void wg_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving reads or writes of accumulator registers across the
// asynchronous products (the registers are live in the tensor core between issue and wait).
template <int N>
__device__ __forceinline__ void wg_fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N, int M>
__device__ __forceinline__ void wg_fence_operands(uint32_t (&r)[N][M]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int k = 0; k < M; ++k) asm volatile("" : "+r"(r[i][k])::"memory");
}
// Shared memory written by the generic proxy (cp.async, st.shared) before wgmma reads it.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// d[64] (= or +=) A [64, 16] * B [16, 128], A and B K-major in shared memory (descriptors).
// accumulate == 0: d = A B (d's old values are ignored).
template <typename T>
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], uint64_t a_desc,
                                                    uint64_t b_desc, int accumulate) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" MIXSERVE_WG_ACC64
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : MIXSERVE_WG_OUT64(d)
        : "l"(a_desc), "l"(b_desc), "r"(accumulate));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {" MIXSERVE_WG_ACC64
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : MIXSERVE_WG_OUT64(d)
        : "l"(a_desc), "l"(b_desc), "r"(accumulate));
  }
}

// d[64] += A [64, 16] * B [16, 128]: A from registers (the mma.sync m16n8k16 A fragment of the
// thread's warp, 16 rows per warp), B MN-major in shared memory (transposed read).
template <typename T>
__device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[64], const uint32_t (&a)[4],
                                                    uint64_t b_desc) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" MIXSERVE_WG_ACC64
                 "}, {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
                 : MIXSERVE_WG_OUT64(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc));
  } else {
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {" MIXSERVE_WG_ACC64
                 "}, {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
                 : MIXSERVE_WG_OUT64(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc));
  }
}

}  // namespace mixserve::cuda
