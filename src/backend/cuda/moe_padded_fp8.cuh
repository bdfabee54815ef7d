// Kernels of the grouped, padded FP8 MoE (see moe_padded_fp8.h for the formulas).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <type_traits>

#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/fp8_pack.cuh"
#include "backend/cuda/moe_groups.cuh"
#include "backend/cuda/moe_padded_fp8.h"

namespace mixserve::cuda {

constexpr int kGroupedThreads = 256;
constexpr int kGroupedMaxTopK = 16;

constexpr int kGroupMaxExperts = 64;  // moe_group_experts_fp8's bound on E (and so on G)
constexpr int kGroupThreads = 512, kGroupMaxBlocks = 264;

// The groups of a.counts into group_expert, group_count and expert_group (a.E, a.G <= 64).
__device__ inline void assign_groups_fp8(const MoeGroupFp8Args& a, int32_t* group_expert,
                                         int32_t* group_count, int32_t* expert_group) {
  if (a.experts_in_order) {
    for (int e = 0; e < a.E; ++e) {
      group_expert[e] = e;
      group_count[e] = a.counts[e];
      expert_group[e] = e;
    }
  } else if (a.by_count) {
    assign_moe_groups_by_count(a.counts, a.E, a.G, group_expert, group_count, expert_group);
  } else {
    assign_moe_groups(a.counts, a.E, a.G, group_expert, group_count, expert_group);
  }
}

// Every block forms the groups in shared memory (its thread 0; E <= 64 experts), block 0 writes
// them and the pointer arrays out, and the blocks map the pairs to their grouped rows. Until
// session 11 one block of 256 threads mapped every pair: 53 us a layer at 16,384 pairs.
__global__ void __launch_bounds__(kGroupThreads) moe_group_experts_fp8_kernel(MoeGroupFp8Args a) {
  __shared__ int32_t group_expert[kGroupMaxExperts], group_count[kGroupMaxExperts],
      expert_group[kGroupMaxExperts];
  __shared__ int layout_ok, G_s, C_s;
  if (threadIdx.x == 0) {
    layout_ok = 1;
    if (a.derive_layout) {  // plan_counted_layout's G and C, from the counts
      int G = 0, C = 0;
      counted_groups_and_capacity(a.counts, a.E, a.align, &G, &C);
      layout_ok = G > 0 && int64_t{G} * C <= a.max_rows;
      a.G = layout_ok ? G : 0;
      a.C = layout_ok ? C : 0;
      a.by_count = true;
      if (blockIdx.x == 0) {
        a.layout[0] = a.G;
        a.layout[1] = a.C;
      }
    }
    if (layout_ok) assign_groups_fp8(a, group_expert, group_count, expert_group);
    G_s = a.G;
    C_s = a.C;
  }
  __syncthreads();
  if (!layout_ok) return;
  a.G = G_s;  // thread 0's (derived) G and C in every thread's copy of the arguments
  a.C = C_s;
  if (threadIdx.x == 0) {
    if (blockIdx.x == 0) {
      for (int g = 0; g < a.G; ++g) {
        a.group_expert[g] = group_expert[g];
        a.group_count[g] = group_count[g];
      }
      for (int e = 0; e < a.E; ++e) a.expert_group[e] = expert_group[e];
      if (a.ptrs != nullptr) {
        const size_t C = a.C, H = a.H, F = a.F;
        for (int g = 0; g < a.G; ++g) {
          const size_t e = group_expert[g], row0 = g * C;
          a.ptrs[0 * a.G + g] = a.x_q + row0 * H;
          a.ptrs[1 * a.G + g] = a.w13 + e * 2 * F * H;
          a.ptrs[2 * a.G + g] = static_cast<__nv_bfloat16*>(a.raw13) + row0 * 2 * F;
          a.ptrs[3 * a.G + g] = a.act_q + row0 * F;
          a.ptrs[4 * a.G + g] = a.w2 + e * H * F;
          a.ptrs[5 * a.G + g] = static_cast<__nv_bfloat16*>(a.raw2) + row0 * H;
        }
      }
    }
  }
  __syncthreads();
  if (a.pair_pos == nullptr) return;
  for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < a.pairs; p += gridDim.x * blockDim.x) {
    const int e = a.experts[p];
    if (e >= a.E) continue;  // expert parallel: another rank's pair, never combined here
    a.pair_pos[p] = expert_group[e] * a.C + (a.pair_pos[p] - a.offsets[e]);
  }
}

// One block per grouped row, 16-byte copies.  dst_q: [G*C, H]; dst_scales: [G*C]
// layout (may be null): [2] {G, C} from the device; C is then layout[1] and the blocks past
// G * C return.
__global__ void gather_rows_grouped_fp8_kernel(const uint8_t* src_q, const float* src_scales,
                                               const int32_t* group_expert,
                                               const int32_t* group_count, const int32_t* offsets,
                                               const int32_t* sorted_token, int C, int H,
                                               uint8_t* dst_q, float* dst_scales,
                                               const int32_t* layout = nullptr) {
  if (layout != nullptr) {
    C = layout[1];
    if (int64_t{blockIdx.x} >= int64_t{layout[0]} * C) return;
  }
  const int r = blockIdx.x, g = r / C, j = r % C;
  uint4* d = reinterpret_cast<uint4*>(dst_q + static_cast<int64_t>(r) * H);
  if (j >= group_count[g]) {  // unused capacity: zeros, never NaN garbage
    for (int i = threadIdx.x; i < H / 16; i += blockDim.x) d[i] = make_uint4(0, 0, 0, 0);
    if (threadIdx.x == 0) dst_scales[r] = 0.0f;
    return;
  }
  const int64_t tok = sorted_token[offsets[group_expert[g]] + j];
  const uint4* s = reinterpret_cast<const uint4*>(src_q + tok * H);
  for (int i = threadIdx.x; i < H / 16; i += blockDim.x) d[i] = s[i];
  if (threadIdx.x == 0) dst_scales[r] = src_scales[tok];
}

__global__ void moe_ungroup_pairs_fp8_kernel(const int32_t* experts, const int32_t* offsets,
                                             const int32_t* expert_group, const int32_t* layout,
                                             int E, int pairs, int32_t* pair_pos) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= pairs || layout[0] == 0) return;
  const int e = experts[p];
  if (e >= E) return;
  pair_pos[p] = offsets[e] + (pair_pos[p] - expert_group[e] * layout[1]);
}

// Max over the block (kThreads threads, or `warps` warps of at most kThreads / 32).
template <int kThreads>
__device__ __forceinline__ float grouped_block_amax(float v, int warps = kThreads / 32) {
  __shared__ float partial[kThreads / 32];
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float r = partial[0];
  for (int i = 1; i < warps; ++i) r = fmaxf(r, partial[i]);
  return r;
}

__device__ __forceinline__ void unpack_bf16x8(const uint4& v, float* out) {
  const __nv_bfloat16* b = reinterpret_cast<const __nv_bfloat16*>(&v);
#pragma unroll
  for (int j = 0; j < 8; ++j) out[j] = __bfloat162float(b[j]);
}

// One chunk of SiLU·mul on raw sums: v[k] = SiLU(gate[k] xs gsc[k]) * up[k] xs usc[k] for 8
// bf16 gate and up sums; amax takes |v|. kFast: SiLU through __expf and __fdividef (a few
// ulp, far below E4M3's step; a < -87 gives 0) instead of expf and IEEE division.
template <bool kFast = false>
__device__ __forceinline__ void silu_mul_scaled8(const uint4& gate, const uint4& up, float xs,
                                                 const float* gsc, const float* usc, float* v,
                                                 float& amax) {
  float gv[8], uv[8];
  unpack_bf16x8(gate, gv);
  unpack_bf16x8(up, uv);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float a = gv[k] * xs * gsc[k], u = uv[k] * xs * usc[k];
    if constexpr (kFast) {
      v[k] = __fdividef(a, 1.0f + __expf(-a)) * u;
    } else {
      v[k] = a / (1.0f + expf(-a)) * u;
    }
    amax = fmaxf(amax, fabsf(v[k]));
  }
}

// The row's E4M3 chunks (thread's chunk c = c * kThreads + threadIdx.x) with one scale from the
// block's amax: d[chunk] = pack(v[c] / scale), *scale_out = scale (thread 0).
// nt: the block's threads (kThreads unless given; a multiple of 32).
template <int kThreads, int kChunks>
__device__ __forceinline__ void store_row_e4m3(const float (&v)[kChunks][8], float amax,
                                               int chunks, uint2* d, float* scale_out,
                                               int nt = kThreads) {
  amax = grouped_block_amax<kThreads>(amax, nt / 32);
  const float scale = amax > 0.0f ? amax / kFp8Max : 1.0f;
  const float inv = amax > 0.0f ? kFp8Max / amax : 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * nt + threadIdx.x;
    if (i < chunks) d[i] = pack_e4m3x8(v[c], inv);
  }
  if (threadIdx.x == 0) *scale_out = scale;
}

// One block of kThreads per grouped row, the row in registers (kChunks chunks of 8 gate and 8
// up values per thread: F <= 8 * kChunks * kThreads).  raw13: [G*C, 2F]; q: [G*C, F]
template <int kThreads, int kChunks>
__global__ void __launch_bounds__(kThreads)
    silu_mul_grouped_fp8_kernel(const __nv_bfloat16* raw13, const float* x_scales,
                                const float* w13_scales, const int32_t* group_expert,
                                const int32_t* group_count, int C, int F, uint8_t* q,
                                float* scales) {
  const int64_t r = blockIdx.x;
  const int g = static_cast<int>(r / C), j = static_cast<int>(r % C);
  const int chunks = F / 8;
  uint2* d = reinterpret_cast<uint2*>(q + r * F);
  if (j >= group_count[g]) {
    for (int i = threadIdx.x; i < chunks; i += blockDim.x) d[i] = make_uint2(0, 0);
    if (threadIdx.x == 0) scales[r] = 0.0f;
    return;
  }
  const float xs = x_scales[r];
  const float4* gs = reinterpret_cast<const float4*>(w13_scales + int64_t{group_expert[g]} * 2 * F);
  const float4* us = gs + F / 4;
  const uint4* gp = reinterpret_cast<const uint4*>(raw13 + r * 2 * F);
  const uint4* up = gp + F / 8;
  float v[kChunks][8];
  float amax = 0.0f;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kThreads + threadIdx.x;
    if (i < chunks) {
      const float4 g0 = gs[2 * i], g1 = gs[2 * i + 1], u0 = us[2 * i], u1 = us[2 * i + 1];
      const float gsc[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
      const float usc[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
      silu_mul_scaled8(gp[i], up[i], xs, gsc, usc, v[c], amax);
    }
  }
  store_row_e4m3<kThreads, kChunks>(v, amax, chunks, d, scales + r);
}

// Row tiles for large groups (counted steps): a block of kThreads runs kRows consecutive rows
// of one group, each thread the same kChunks chunks of every row, so the w13 scales of its
// chunks (16 floats a chunk) stay in registers across the rows. Per row the one-row kernel
// above reads 2F float scales (from L2) beside its 2F bf16 sums: three times the row's bytes.
//   raw13: [G*C, 2F]; q: [G*C, F]; grid: G * ceil(C / kRows) blocks
template <int kThreads, int kChunks, int kRows>
__global__ void __launch_bounds__(kThreads, 1)
    silu_mul_grouped_rows_fp8_kernel(const __nv_bfloat16* raw13, const float* x_scales,
                                     const float* w13_scales, const int32_t* group_expert,
                                     const int32_t* group_count, int C, int F, uint8_t* q,
                                     float* scales) {
  const int tiles = (C + kRows - 1) / kRows;
  const int g = blockIdx.x / tiles, j0 = (blockIdx.x % tiles) * kRows;
  const int rows = min(kRows, C - j0), live = max(0, min(rows, group_count[g] - j0));
  const int chunks = F / 8;
  const int64_t r0 = int64_t{g} * C + j0;
  for (int j = live; j < rows; ++j) {  // unused capacity: zeros, scale 0
    uint2* d = reinterpret_cast<uint2*>(q + (r0 + j) * F);
    for (int i = threadIdx.x; i < chunks; i += kThreads) d[i] = make_uint2(0, 0);
    if (threadIdx.x == 0) scales[r0 + j] = 0.0f;
  }
  if (live == 0) return;
  const float4* gs = reinterpret_cast<const float4*>(w13_scales + int64_t{group_expert[g]} * 2 * F);
  const float4* us = gs + F / 4;
  float gsc[kChunks][8], usc[kChunks][8];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int i = c * kThreads + threadIdx.x;
    if (i < chunks) {
      const float4 g0 = gs[2 * i], g1 = gs[2 * i + 1], u0 = us[2 * i], u1 = us[2 * i + 1];
      const float gv[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
      const float uv[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        gsc[c][k] = gv[k];
        usc[c][k] = uv[k];
      }
    }
  }
  for (int j = 0; j < live; ++j) {
    const int64_t r = r0 + j;
    const float xs = x_scales[r];
    const uint4* gp = reinterpret_cast<const uint4*>(raw13 + r * 2 * F);
    const uint4* up = gp + F / 8;
    float v[kChunks][8];
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int i = c * kThreads + threadIdx.x;
      if (i < chunks) silu_mul_scaled8(gp[i], up[i], xs, gsc[c], usc[c], v[c], amax);
    }
    store_row_e4m3<kThreads, kChunks>(v, amax, chunks, reinterpret_cast<uint2*>(q + r * F),
                                      scales + r);
    __syncthreads();  // grouped_block_amax's shared partials are reused by the next row
  }
}

// ---- sm_90 bulk copies (cp.async.bulk) completing on shared-memory mbarriers ----
__device__ __forceinline__ uint32_t shared_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_addr(bar)), "r"(arrivals)
               : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
// The issuing thread's arrival, expecting `bytes` of bulk copies to complete the phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_addr(bar)),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void mbar_wait_parity(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n\t.reg .pred p;\n\t"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
        "selp.u32 %0, 1, 0, p;\n\t}"
        : "=r"(done)
        : "r"(shared_addr(bar)), "r"(parity)
        : "memory");
  } while (done == 0);
}
// Global -> shared, `bytes` (a multiple of 16, both addresses 16-byte aligned).
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes,
                                          uint64_t* bar) {
  // Generic-proxy reads of dst before this (the previous row's) are ordered before the copy.
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
          "r"(shared_addr(dst)),
      "l"(src), "r"(bytes), "r"(shared_addr(bar))
      : "memory");
}

// Counted steps (many rows a group): persistent blocks, one an SM, each a contiguous share of
// the live rows (groups in order, row j < group_count[g]) and of the padding rows. The raw
// gate|up row (4F bytes) arrives by one bulk copy into one of two shared-memory stages while
// the row before it is computed; the group's 2F w13 scales sit in shared memory beside them
// (loaded again when the block's rows cross into the next group). Shared memory: 16F bytes
// (F = 14,336: 224 KiB). The row-tile kernel above waits for each row's loads with nothing
// else in flight (1.7 TB/s on an H100, docs/perf/NOTES.md).
//   raw13: [G*C, 2F] (16-byte aligned); w13_scales: [E, 2F]; q: [G*C, F]; F % 8 == 0,
//   F / 8 <= blockDim.x * kChunks, blockDim.x <= kThreads a multiple of 32 (thread t computes
//   chunks c * blockDim.x + t). kFast: see silu_mul_scaled8.
template <int kThreads, int kChunks, bool kFast>
__global__ void __launch_bounds__(kThreads, 1)
    silu_mul_grouped_bulk_fp8_kernel(const __nv_bfloat16* raw13, const float* x_scales,
                                     const float* w13_scales, const int32_t* group_expert,
                                     const int32_t* group_count, int G, int C, int F,
                                     uint8_t* q, float* scales) {
  extern __shared__ __align__(128) unsigned char bulk_smem[];
  float* sc = reinterpret_cast<float*>(bulk_smem);  // [2F] gate then up scales
  __nv_bfloat16* stage = reinterpret_cast<__nv_bfloat16*>(bulk_smem + size_t(8) * F);  // [2][2F]
  __shared__ uint64_t bars[3];  // stage 0, stage 1, scales
  const int chunks = F / 8;
  const uint32_t row_bytes = uint32_t(F) * 4, scale_bytes = uint32_t(F) * 8;
  auto live_of = [&](int g) { return min(max(group_count[g], 0), C); };
  int n_live = 0;
  for (int g = 0; g < G; ++g) n_live += live_of(g);
  const int64_t n_pad = int64_t{G} * C - n_live;
  const int nb = gridDim.x, b = blockIdx.x, nt = blockDim.x;

  // Padding rows: zeros and scale 0 (the w2 GEMM computes them; nothing reads them).
  {
    int64_t p = n_pad * b / nb;
    const int64_t p_end = n_pad * (b + 1) / nb;
    int g = 0;
    int64_t before = 0;  // padding rows of groups < g
    while (p < p_end) {
      while (before + (C - live_of(g)) <= p) before += C - live_of(g++);
      const int64_t r = int64_t{g} * C + live_of(g) + (p - before);
      uint2* d = reinterpret_cast<uint2*>(q + r * F);
      for (int i = threadIdx.x; i < chunks; i += nt) d[i] = make_uint2(0, 0);
      if (threadIdx.x == 0) scales[r] = 0.0f;
      ++p;
    }
  }
  const int k_begin = int(int64_t{n_live} * b / nb), n = int(int64_t{n_live} * (b + 1) / nb) - k_begin;
  if (n <= 0) return;
  if (threadIdx.x == 0) {
    for (int i = 0; i < 3; ++i) mbar_init(&bars[i], 1);
    mbar_init_fence();
  }
  __syncthreads();
  // (g, j) of the block's first live row, then advance() steps through live rows.
  int g = 0, j = k_begin;
  while (j >= live_of(g)) j -= live_of(g++);
  auto advance = [&](int& gg, int& jj) {
    if (++jj >= live_of(gg)) {
      jj = 0;
      do ++gg;
      while (gg < G && live_of(gg) == 0);
    }
  };
  auto issue = [&](int k, int gg, int jj) {  // thread 0: row (gg, jj) into stage k & 1
    mbar_arrive_expect_tx(&bars[k & 1], row_bytes);
    bulk_load(stage + size_t(k & 1) * 2 * F, raw13 + (int64_t{gg} * C + jj) * 2 * F, row_bytes,
              &bars[k & 1]);
  };
  if (threadIdx.x == 0) issue(0, g, j);
  int scales_of = -1;
  uint32_t scale_parity = 0;
  for (int k = 0; k < n; ++k) {
    if (g != scales_of) {  // every thread is past its last read of sc (the row's end sync)
      if (threadIdx.x == 0) {
        mbar_arrive_expect_tx(&bars[2], scale_bytes);
        bulk_load(sc, w13_scales + int64_t{group_expert[g]} * 2 * F, scale_bytes, &bars[2]);
      }
      mbar_wait_parity(&bars[2], scale_parity);
      scale_parity ^= 1;
      scales_of = g;
    }
    int g1 = g, j1 = j;
    advance(g1, j1);
    // The next row into the other stage, whose last reader (row k - 1) is behind the end sync.
    if (threadIdx.x == 0 && k + 1 < n) issue(k + 1, g1, j1);
    mbar_wait_parity(&bars[k & 1], (k >> 1) & 1);
    const int64_t r = int64_t{g} * C + j;
    const float xs = x_scales[r];
    const uint4* gp = reinterpret_cast<const uint4*>(stage + size_t(k & 1) * 2 * F);
    const uint4* up = gp + F / 8;
    const float4* gs = reinterpret_cast<const float4*>(sc);
    const float4* us = gs + F / 4;
    float v[kChunks][8];
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int i = c * nt + threadIdx.x;
      if (i < chunks) {
        const float4 g0 = gs[2 * i], g1v = gs[2 * i + 1], u0 = us[2 * i], u1 = us[2 * i + 1];
        const float gsc[8] = {g0.x, g0.y, g0.z, g0.w, g1v.x, g1v.y, g1v.z, g1v.w};
        const float usc[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
        silu_mul_scaled8<kFast>(gp[i], up[i], xs, gsc, usc, v[c], amax);
      }
    }
    store_row_e4m3<kThreads, kChunks>(v, amax, chunks, reinterpret_cast<uint2*>(q + r * F),
                                      scales + r, nt);
    __syncthreads();  // the amax partials and this stage are free for the next rows
    g = g1;
    j = j1;
  }
}

// The counted SiLU·mul with the w13 scales in registers, so shared memory holds up to
// kMaxStages rows in flight instead of two beside the scales (the two-stage kernel above keeps
// about one row a SM in flight: latency-bound at ~2.2 TB/s on an H200). Persistent blocks,
// one an SM, rows shared out as in the kernel above; each thread computes chunks c * nt + t
// (kChunks of them, nt = blockDim.x), its gate and up scales (16 floats a chunk) loaded from
// global memory when the block's rows enter a group. One block barrier a row: after the
// row's amax (partials double-buffered by row parity) every thread has read the row's stage,
// so thread 0 refills it with the row `stages` ahead.
//   raw13: [G*C, 2F]; shared memory: stages * 4F bytes, 1 <= stages <= kMaxStages;
//   F % 8 == 0, F / 8 <= kChunks * blockDim.x, blockDim.x <= kThreads, a multiple of 32
constexpr int kSiluStreamMaxStages = 4;
template <int kThreads, int kChunks, bool kFast>
__global__ void __launch_bounds__(kThreads, 1)
    silu_mul_grouped_stream_fp8_kernel(const __nv_bfloat16* raw13, const float* x_scales,
                                       const float* w13_scales, const int32_t* group_expert,
                                       const int32_t* group_count, int G, int C, int F,
                                       int stages, uint8_t* q, float* scales) {
  extern __shared__ __align__(128) unsigned char stream_smem[];
  __nv_bfloat16* stage = reinterpret_cast<__nv_bfloat16*>(stream_smem);  // [stages][2F]
  __shared__ uint64_t bars[kSiluStreamMaxStages];
  __shared__ float partial[2][kThreads / 32];
  const int chunks = F / 8, nt = blockDim.x, warps = nt / 32;
  const uint32_t row_bytes = uint32_t(F) * 4;
  auto live_of = [&](int g) { return min(max(group_count[g], 0), C); };
  int n_live = 0;
  for (int g = 0; g < G; ++g) n_live += live_of(g);
  const int64_t n_pad = int64_t{G} * C - n_live;
  const int nb = gridDim.x, b = blockIdx.x;
  {  // padding rows: zeros and scale 0 (the w2 GEMM computes them; nothing reads them)
    int64_t p = n_pad * b / nb;
    const int64_t p_end = n_pad * (b + 1) / nb;
    int g = 0;
    int64_t before = 0;
    while (p < p_end) {
      while (before + (C - live_of(g)) <= p) before += C - live_of(g++);
      const int64_t r = int64_t{g} * C + live_of(g) + (p - before);
      uint2* d = reinterpret_cast<uint2*>(q + r * F);
      for (int i = threadIdx.x; i < chunks; i += nt) d[i] = make_uint2(0, 0);
      if (threadIdx.x == 0) scales[r] = 0.0f;
      ++p;
    }
  }
  const int k_begin = int(int64_t{n_live} * b / nb),
            n = int(int64_t{n_live} * (b + 1) / nb) - k_begin;
  if (n <= 0) return;
  if (threadIdx.x == 0) {
    for (int i = 0; i < stages; ++i) mbar_init(&bars[i], 1);
    mbar_init_fence();
  }
  __syncthreads();
  auto advance = [&](int& gg, int& jj) {
    if (++jj >= live_of(gg)) {
      jj = 0;
      do ++gg;
      while (gg < G && live_of(gg) == 0);
    }
  };
  int g = 0, j = k_begin;
  while (j >= live_of(g)) j -= live_of(g++);
  int gi = g, ji = j;  // the next row to issue (thread 0)
  if (threadIdx.x == 0) {
    for (int k = 0; k < stages && k < n; ++k) {
      mbar_arrive_expect_tx(&bars[k], row_bytes);
      bulk_load(stage + size_t(k) * 2 * F, raw13 + (int64_t{gi} * C + ji) * 2 * F, row_bytes,
                &bars[k]);
      advance(gi, ji);
    }
  }
  float gsc[kChunks][8], usc[kChunks][8];
  int scales_of = -1;
  for (int k = 0; k < n; ++k) {
    if (g != scales_of) {
      const float4* gs =
          reinterpret_cast<const float4*>(w13_scales + int64_t{group_expert[g]} * 2 * F);
      const float4* us = gs + F / 4;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int i = c * nt + threadIdx.x;
        if (i < chunks) {
          const float4 g0 = gs[2 * i], g1 = gs[2 * i + 1], u0 = us[2 * i], u1 = us[2 * i + 1];
          gsc[c][0] = g0.x, gsc[c][1] = g0.y, gsc[c][2] = g0.z, gsc[c][3] = g0.w;
          gsc[c][4] = g1.x, gsc[c][5] = g1.y, gsc[c][6] = g1.z, gsc[c][7] = g1.w;
          usc[c][0] = u0.x, usc[c][1] = u0.y, usc[c][2] = u0.z, usc[c][3] = u0.w;
          usc[c][4] = u1.x, usc[c][5] = u1.y, usc[c][6] = u1.z, usc[c][7] = u1.w;
        }
      }
      scales_of = g;
    }
    const int s = k % stages;
    mbar_wait_parity(&bars[s], (k / stages) & 1);
    const int64_t r = int64_t{g} * C + j;
    const float xs = x_scales[r];
    const uint4* gp = reinterpret_cast<const uint4*>(stage + size_t(s) * 2 * F);
    const uint4* up = gp + F / 8;
    float v[kChunks][8];
    float amax = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int i = c * nt + threadIdx.x;
      if (i < chunks) silu_mul_scaled8<kFast>(gp[i], up[i], xs, gsc[c], usc[c], v[c], amax);
    }
    amax = warp_max(amax);
    if (threadIdx.x % 32 == 0) partial[k & 1][threadIdx.x / 32] = amax;
    __syncthreads();  // the row's stage is read by all; its partials are written
    if (threadIdx.x == 0 && k + stages < n) {
      mbar_arrive_expect_tx(&bars[s], row_bytes);
      bulk_load(stage + size_t(s) * 2 * F, raw13 + (int64_t{gi} * C + ji) * 2 * F, row_bytes,
                &bars[s]);
      advance(gi, ji);
    }
    amax = partial[k & 1][0];
    for (int w = 1; w < warps; ++w) amax = fmaxf(amax, partial[k & 1][w]);
    const float scale = amax > 0.0f ? amax / kFp8Max : 1.0f;
    const float inv = amax > 0.0f ? kFp8Max / amax : 0.0f;
    uint2* d = reinterpret_cast<uint2*>(q + r * F);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int i = c * nt + threadIdx.x;
      if (i < chunks) d[i] = pack_e4m3x8(v[c], inv);
    }
    if (threadIdx.x == 0) scales[r] = scale;
    advance(g, j);
  }
}

// Block (t, slice): token t, kVec consecutive h per thread from slice * blockDim.x * kVec (16-
// byte loads of out and scales, 8-byte loads of raw2 for kVec = 4), so a batch-1 step still
// spreads over H / (blockDim.x kVec) blocks.
//   raw2: [G*C, H] bf16; experts, weights, pair_pos: [T, K]; out: [T, H]; kVec = 4 needs
//   H % 4 == 0
template <int kVec>
__global__ void moe_combine_grouped_fp8_kernel(const __nv_bfloat16* raw2, const float* act_scales,
                                               const float* w2_scales, const int32_t* experts,
                                               const float* weights, const int32_t* pair_pos,
                                               int K, int H, int E, float* out) {
  using Vec = typename std::conditional<kVec == 4, float4, float>::type;
  const int t = blockIdx.x, h = (blockIdx.y * blockDim.x + threadIdx.x) * kVec;
  if (h >= H) return;
  // The token's slots of experts < E in ascending expert order (insertion sort of at most 16),
  // as moe_combine (and, under expert parallelism, moe_combine_local) order them.
  int order[kGroupedMaxTopK];
  int n = 0;
  for (int k = 0; k < K; ++k) {
    const int e = experts[t * K + k];
    if (e >= E) continue;
    int j = n++;
    while (j > 0 && experts[t * K + order[j - 1]] > e) {
      order[j] = order[j - 1];
      --j;
    }
    order[j] = k;
  }
  float acc[kVec] = {};
  for (int k = 0; k < n; ++k) {
    const int slot = t * K + order[k];
    const int64_t r = pair_pos[slot];
    const float coef = weights[slot] * act_scales[r];
    float xv[kVec];
    load_bf16<kVec>(raw2 + r * H + h, xv);
    const Vec s = *reinterpret_cast<const Vec*>(w2_scales + int64_t{experts[slot]} * H + h);
    const float* sv = reinterpret_cast<const float*>(&s);
#pragma unroll
    for (int i = 0; i < kVec; ++i) acc[i] += xv[i] * sv[i] * coef;
  }
  *reinterpret_cast<Vec*>(out + static_cast<int64_t>(t) * H + h) =
      *reinterpret_cast<const Vec*>(acc);
}

}  // namespace mixserve::cuda
