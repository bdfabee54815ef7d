// Launchers of the grouped, padded FP8 MoE kernels (moe_padded_fp8.cuh).
#include "backend/cuda/moe_padded_fp8.cuh"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

namespace {
// MIXSERVE_SILU_BULK=0: the row-tile kernel instead of the bulk-copy pipeline, for measurements.
bool silu_bulk_disabled() {
  static const bool off = [] {
    const char* env = std::getenv("MIXSERVE_SILU_BULK");
    return env != nullptr && std::string(env) == "0";
  }();
  return off;
}
// MIXSERVE_SILU_VARIANT (measurement): 0 = the two-stage bulk kernel with expf and IEEE
// division on 1,024 threads, 1 = __expf / __fdividef on 1,024 threads, 2 = __expf /
// __fdividef on the fewest warps that give every thread the same number of chunks, 3 = the
// streaming kernel (scales in registers, up to 4 rows in flight; the default: 536 -> 418 us
// at 8,192 tokens on an H100, docs/perf/NOTES.md session 8).
int silu_variant() {
  static const int v = [] {
    const char* env = std::getenv("MIXSERVE_SILU_VARIANT");
    return env != nullptr && *env >= '0' && *env <= '3' ? *env - '0' : 3;
  }();
  return v;
}
}  // namespace

cudaError_t moe_group_experts_fp8(const MoeGroupFp8Args& args, cudaStream_t stream) {
  if (args.E <= 0) return cudaSuccess;
  if (args.derive_layout) {
    if (args.layout == nullptr || args.align <= 0 || args.experts_in_order) {
      return cudaErrorInvalidValue;
    }
  } else if (args.G <= 0) {
    return cudaSuccess;
  }
  if (args.experts_in_order && args.G != args.E) return cudaErrorInvalidValue;
  if (args.E > kGroupMaxExperts || args.G > args.E) return cudaErrorInvalidValue;
  const int most = args.max_blocks > 0 ? args.max_blocks
                   : moe_routing_tiled()  ? kGroupMaxBlocks
                                          : 1;
  const int blocks =
      args.pair_pos == nullptr
          ? 1
          : std::clamp((args.pairs + kGroupThreads - 1) / kGroupThreads, 1, most);
  moe_group_experts_fp8_kernel<<<blocks, kGroupThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t gather_rows_grouped_fp8(const uint8_t* src_q, const float* src_scales,
                                    const int32_t* group_expert, const int32_t* group_count,
                                    const int32_t* offsets, const int32_t* sorted_token, int G,
                                    int C, int H, uint8_t* dst_q, float* dst_scales,
                                    cudaStream_t stream) {
  if (G <= 0 || C <= 0) return cudaSuccess;
  if (H % 16 != 0) return cudaErrorInvalidValue;
  gather_rows_grouped_fp8_kernel<<<G * C, 128, 0, stream>>>(src_q, src_scales, group_expert,
                                                            group_count, offsets, sorted_token, C,
                                                            H, dst_q, dst_scales);
  return cudaGetLastError();
}

cudaError_t gather_rows_grouped_fp8_derived(const uint8_t* src_q, const float* src_scales,
                                            const int32_t* group_expert,
                                            const int32_t* group_count, const int32_t* offsets,
                                            const int32_t* sorted_token, const int32_t* layout,
                                            int max_rows, int H, uint8_t* dst_q,
                                            float* dst_scales, cudaStream_t stream) {
  if (max_rows <= 0) return cudaSuccess;
  if (H % 16 != 0 || layout == nullptr) return cudaErrorInvalidValue;
  gather_rows_grouped_fp8_kernel<<<max_rows, 128, 0, stream>>>(
      src_q, src_scales, group_expert, group_count, offsets, sorted_token, 1, H, dst_q,
      dst_scales, layout);
  return cudaGetLastError();
}

cudaError_t moe_ungroup_pairs_fp8(const int32_t* experts, const int32_t* offsets,
                                  const int32_t* expert_group, const int32_t* layout, int E,
                                  int pairs, int32_t* pair_pos, cudaStream_t stream) {
  if (pairs <= 0) return cudaSuccess;
  moe_ungroup_pairs_fp8_kernel<<<(pairs + 255) / 256, 256, 0, stream>>>(
      experts, offsets, expert_group, layout, E, pairs, pair_pos);
  return cudaGetLastError();
}

cudaError_t silu_mul_grouped_fp8(const void* raw13, const float* x_scales,
                                 const float* w13_scales, const int32_t* group_expert,
                                 const int32_t* group_count, int G, int C, int F, uint8_t* act_q,
                                 float* act_scales, cudaStream_t stream) {
  if (G <= 0 || C <= 0) return cudaSuccess;
  const int chunks_per_thread = (F / 8 + kGroupedThreads - 1) / kGroupedThreads;
  if (F % 8 != 0 || chunks_per_thread > 8 || reinterpret_cast<uintptr_t>(raw13) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(w13_scales) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(act_q) % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  const auto* raw = static_cast<const __nv_bfloat16*>(raw13);
  const unsigned rows = static_cast<unsigned>(G) * C;
  auto launch = [&](auto kernel, int threads) {
    kernel<<<rows, threads, 0, stream>>>(raw, x_scales, w13_scales, group_expert, group_count, C,
                                         F, act_q, act_scales);
  };
  // Many rows (counted steps; never a captured decode step, whose G * C <= 8 * 128): the
  // bulk-copy pipeline, where its 16F bytes of shared memory fit.
  constexpr int kBulkThreads = 1024;
  if (rows > 1024 && F / 8 <= 2 * kBulkThreads && !silu_bulk_disabled()) {
    int device = 0, sms = 0, smem_optin = 0;
    if (cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) ==
            cudaSuccess &&
        size_t(16) * F + 256 <= size_t(smem_optin)) {
      const size_t smem = size_t(16) * F;
      const int variant = silu_variant(), per_thread = F / 8 <= kBulkThreads ? 1 : 2;
      constexpr int kStreamThreads = 448, kStreamChunks = 4;
      const int stream_threads = (F / 8 + kStreamChunks * 32 - 1) / (kStreamChunks * 32) * 32;
      const int stages = std::min<int>(kSiluStreamMaxStages, (smem_optin - 1024) / (4 * F));
      if (variant == 3 && stream_threads <= kStreamThreads && stages >= 2) {
        auto kernel = silu_mul_grouped_stream_fp8_kernel<kStreamThreads, kStreamChunks, true>;
        const size_t stream_smem = size_t(stages) * 4 * F;
        cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(stream_smem));
        if (e != cudaSuccess) return e;
        const unsigned grid = static_cast<unsigned>(std::min<int64_t>(sms, rows));
        kernel<<<grid, stream_threads, stream_smem, stream>>>(raw, x_scales, w13_scales,
                                                              group_expert, group_count, G, C,
                                                              F, stages, act_q, act_scales);
        return cudaGetLastError();
      }
      // Variant 2: F = 14,336 (1,792 chunks) runs 896 threads of 2 chunks, not 1,024 of which
      // a quarter have one.
      const int threads = variant == 2 ? (F / 8 + per_thread * 32 - 1) / (per_thread * 32) * 32
                                       : kBulkThreads;
      auto bulk = [&](auto kernel) {
        cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(smem));
        if (e != cudaSuccess) return e;
        const unsigned grid = static_cast<unsigned>(std::min<int64_t>(sms, rows));
        kernel<<<grid, threads, smem, stream>>>(raw, x_scales, w13_scales, group_expert,
                                                group_count, G, C, F, act_q, act_scales);
        return cudaGetLastError();
      };
      if (variant == 0) {
        if (per_thread == 1) return bulk(silu_mul_grouped_bulk_fp8_kernel<kBulkThreads, 1, false>);
        return bulk(silu_mul_grouped_bulk_fp8_kernel<kBulkThreads, 2, false>);
      }
      if (per_thread == 1) return bulk(silu_mul_grouped_bulk_fp8_kernel<kBulkThreads, 1, true>);
      return bulk(silu_mul_grouped_bulk_fp8_kernel<kBulkThreads, 2, true>);
    }
  }
  // Large groups (counted steps): row tiles that keep the w13 scales in registers.
  constexpr int kTileThreads = 1024, kTileRows = 16;
  if (C >= 4 * kTileRows && F / 8 <= 2 * kTileThreads) {
    const unsigned blocks = static_cast<unsigned>(G) * ((C + kTileRows - 1) / kTileRows);
    auto tiles = [&](auto kernel) {
      kernel<<<blocks, kTileThreads, 0, stream>>>(raw, x_scales, w13_scales, group_expert,
                                                  group_count, C, F, act_q, act_scales);
    };
    if (F / 8 <= kTileThreads) {
      tiles(silu_mul_grouped_rows_fp8_kernel<kTileThreads, 1, kTileRows>);
    } else {
      tiles(silu_mul_grouped_rows_fp8_kernel<kTileThreads, 2, kTileRows>);
    }
    return cudaGetLastError();
  }
  // Fewer rows than SMs (batch-1 and -2 steps): 1024 threads a row, for the latency of a
  // single 14,336-wide row rather than the throughput of many.
  if (rows <= 132 && F / 8 > kGroupedThreads) {
    const int chunks = (F / 8 + 1023) / 1024;
    if (chunks <= 1) {
      launch(silu_mul_grouped_fp8_kernel<1024, 1>, 1024);
    } else {
      launch(silu_mul_grouped_fp8_kernel<1024, 2>, 1024);
    }
  } else if (chunks_per_thread <= 1) {
    launch(silu_mul_grouped_fp8_kernel<kGroupedThreads, 1>, kGroupedThreads);
  } else if (chunks_per_thread <= 2) {
    launch(silu_mul_grouped_fp8_kernel<kGroupedThreads, 2>, kGroupedThreads);
  } else if (chunks_per_thread <= 4) {
    launch(silu_mul_grouped_fp8_kernel<kGroupedThreads, 4>, kGroupedThreads);
  } else {
    launch(silu_mul_grouped_fp8_kernel<kGroupedThreads, 8>, kGroupedThreads);
  }
  return cudaGetLastError();
}

cudaError_t moe_combine_grouped_fp8(const void* raw2, const float* act_scales,
                                    const float* w2_scales, const int32_t* experts,
                                    const float* weights, const int32_t* pair_pos, int T, int K,
                                    int H, int E, float* out, cudaStream_t stream) {
  if (T <= 0) return cudaSuccess;
  if (K <= 0 || K > kGroupedMaxTopK) return cudaErrorInvalidValue;
  const auto* bf16 = static_cast<const __nv_bfloat16*>(raw2);
  const bool vec = H % 4 == 0 && ((reinterpret_cast<uintptr_t>(raw2) |
                                    reinterpret_cast<uintptr_t>(w2_scales) |
                                    reinterpret_cast<uintptr_t>(out)) % 16 == 0);
  if (vec) {
    const dim3 grid(T, (H / 4 + 255) / 256);
    moe_combine_grouped_fp8_kernel<4><<<grid, 256, 0, stream>>>(bf16, act_scales, w2_scales,
                                                                experts, weights, pair_pos, K, H,
                                                                E, out);
  } else {
    const dim3 grid(T, (H + 255) / 256);
    moe_combine_grouped_fp8_kernel<1><<<grid, 256, 0, stream>>>(bf16, act_scales, w2_scales,
                                                                experts, weights, pair_pos, K, H,
                                                                E, out);
  }
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
