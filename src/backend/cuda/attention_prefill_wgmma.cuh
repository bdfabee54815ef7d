// Paged causal prefill attention on Hopper's warpgroup tensor-core instructions (wgmma), for
// D = 128 with a BF16 / FP16 cache (activations and cache of one type). attention.cu sends
// the other prefill cases (D = 64, an E4M3 cache, chunks of <= 64 queries) to
// attention_prefill.cuh, whose structure this kernel follows: the same grid, block-table walk,
// masks and online softmax; the products move from mma.sync + ldmatrix to wgmma.
//
// One block of 2 warpgroups (256 threads) per (128-query tile of sequence s, query head);
// warpgroup w owns query rows [64 w, 64 w + 64). Key tiles of Bc = 128. Per tile and
// warpgroup: S [64, 128] = Q K^T as 8 wgmma m64n128k16 (Q and K K-major in shared memory,
// read through descriptors), the online softmax on S's float32 accumulators in registers
// (thread: 2 rows, 32 keys each), then O [64, 128] += P V as 8 wgmma with P converted to
// T in registers as the A operand and V read MN-major (transposed) from shared memory.
// Registers: S 64 + O 64 floats per thread; 1 block (8 warps) per SM.
//
// Shared memory (1,024-aligned, sw128 layout of wgmma.cuh): Q [128, 128] (32 KB), K and V
// [2][128, 128] (2 x 32 KB each: tiles j and j + 1, cp.async double buffer), the block-table
// rows of tiles j + 1 and j + 2 ([2][128] int64). One __syncthreads per key tile (every
// warpgroup done with tile j - 1's buffers, tile j landed); the loads of tile j + 1 are
// issued right after it, so they overlap tile j's products and softmax.
#pragma once

#include <cstdint>

#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/wgmma.cuh"

namespace mixserve::cuda {

constexpr int kWgBr = 128;  // query rows per block (2 warpgroups x 64)
constexpr int kWgBc = 128;  // keys per tile
constexpr int kWgD = 128;
constexpr int kWgThreads = 256;
constexpr uint32_t kWgTileBytes = kWgBc * kWgD * 2;
constexpr uint32_t kWgOffK = kWgBr * kWgD * 2;
constexpr uint32_t kWgOffV = kWgOffK + 2 * kWgTileBytes;
constexpr uint32_t kWgOffRows = kWgOffV + 2 * kWgTileBytes;
// + 1 KB: the dynamic shared-memory base is rounded up to 1,024 bytes in the kernel.
constexpr size_t kWgSmemBytes = kWgOffRows + 2 * kWgBc * sizeof(int64_t) + 1024;

template <typename T>
__global__ void __launch_bounds__(kWgThreads, 1) attention_prefill_wgmma_kernel(AttentionArgs a) {
  constexpr int kChunks = kWgD / 8;                   // 16-byte chunks per row
  constexpr int kRowsPerPass = kWgThreads / kChunks;  // 16
  constexpr int kKvPasses = kWgBc / kRowsPerPass;     // 8
  const int head = blockIdx.x, s = blockIdx.y;
  const int tile = gridDim.z - 1 - blockIdx.z;  // the last query tiles see the most keys
  const int q_begin = a.seq_offsets[s], q_len = a.seq_offsets[s + 1] - q_begin;
  const int r0 = tile * kWgBr;
  if (q_len < a.prefill_min_q || r0 >= q_len) return;
  const int rows = min(kWgBr, q_len - r0);
  const int g = head / (a.num_heads / a.num_kv_heads);
  const int tid = threadIdx.x, wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;

  extern __shared__ unsigned char smem_raw[];
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw));
  const uint32_t q_s = (raw_addr + 1023) & ~1023u;
  unsigned char* smem = smem_raw + (q_s - raw_addr);
  const uint32_t k_s = q_s + kWgOffK, v_s = q_s + kWgOffV;
  int64_t* rows_s = reinterpret_cast<int64_t*>(smem + kWgOffRows);

  // Visible keys of the block's rows: [kv_lo, p_hi] (a chunk's positions are increasing).
  const int32_t* pos = a.positions + q_begin + r0;
  const int p_lo = pos[0], p_hi = pos[rows - 1];
  const int W = a.sliding_window;
  const int kv_lo = W > 0 ? max(0, p_lo - W + 1) : 0;
  const int kv_first_tile = kv_lo / kWgBc * kWgBc;
  const int num_tiles = (p_hi + 1 - kv_first_tile + kWgBc - 1) / kWgBc;
  // This warpgroup's rows [w0, w0 + 64); a warpgroup past the last row only loads.
  const int w0 = wg * 64;
  const bool active = w0 < rows;
  const int wp_lo = pos[min(w0, rows - 1)], wp_hi = pos[min(w0 + 63, rows - 1)];
  // This thread's 2 rows (accumulator layout): w0 + 16 warp + lane / 4 + 8 h.
  int pos_row[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) pos_row[h] = pos[min(w0 + 16 * warp + lane / 4 + 8 * h, rows - 1)];

  const T* qbase = static_cast<const T*>(a.q) + static_cast<int64_t>(head) * kWgD;
  for (int i = tid; i < kWgBr * kChunks; i += kWgThreads) {
    const int r = i / kChunks, ch = i % kChunks;
    const int t = q_begin + r0 + min(r, rows - 1);  // rows past the end: zeros
    cp_async16(q_s + sw128_offset<kWgBr>(r, ch), qbase + t * a.q_stride + ch * 8, r < rows);
  }
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  const int32_t* table = a.block_tables + static_cast<int64_t>(s) * a.max_blocks_per_seq;
  // Block-table walk of tile j (one division per key, by the first Bc threads).
  auto walk_tile = [&](int j) {
    const int p = kv_first_tile + j * kWgBc + tid;
    if (tid < kWgBc) {
      rows_s[(j & 1) * kWgBc + tid] =
          p <= p_hi ? paged_row(table, p, a.block_size, a.num_kv_heads, g, kWgD) : -1;
    }
  };
  const int ch = tid % kChunks, row0 = tid / kChunks;
  auto load_tile = [&](uint32_t buf, int j) {
    const int64_t* rs = rows_s + (j & 1) * kWgBc;
#pragma unroll
    for (int u = 0; u < kKvPasses; ++u) {
      const int r = row0 + u * kRowsPerPass;
      const int64_t row = rs[r];
      const bool valid = row >= 0;  // zero-fill past the range (P = 0 must not meet NaN)
      const int64_t off = valid ? row + ch * 8 : 0;
      cp_async16(k_s + buf + sw128_offset<kWgBc>(r, ch), k_cache + off, valid);
      cp_async16(v_s + buf + sw128_offset<kWgBc>(r, ch), v_cache + off, valid);
    }
  };
  walk_tile(0);
  if (num_tiles > 1) walk_tile(1);
  __syncthreads();
  load_tile(0, 0);
  cp_async_commit();

  const float scale = a.scale * kLog2e;
  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  // Descriptors. Q (K-major, A): this warpgroup's 64 rows, 8-row groups 1,024 bytes apart;
  // k-step kk (16 columns) at +32 bytes inside a 128-byte row, +R * 128 for columns 64..127.
  // K (K-major, B): likewise over the tile's 128 keys. V (MN-major, B): keys are K (8-key
  // groups 1,024 bytes apart: SBO), D is N (64-column halves Bc * 128 bytes apart: LBO).
  const uint32_t q_wg = q_s + w0 * 128;
  for (int j = 0; j < num_tiles; ++j) {
    const int base = kv_first_tile + j * kWgBc;
    const uint32_t cur = (j & 1) * kWgTileBytes, next = kWgTileBytes - cur;
    cp_async_wait<0>();
    fence_proxy_async_smem();  // cp.async wrote tile j (and Q); wgmma reads it (async proxy)
    __syncthreads();           // ... and every warpgroup is done with tile j - 1's buffers
    if (j + 1 < num_tiles) {
      load_tile(next, j + 1);
      cp_async_commit();
    }
    if (j + 2 < num_tiles) walk_tile(j + 2);
    // Warpgroup-uniform: the tile holds no key any of this warpgroup's rows sees.
    const bool skip = !active || base > wp_hi || (W > 0 && base + kWgBc - 1 <= wp_lo - W);
    if (skip) continue;
    float sc[64];
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < kWgD / 16; ++kk) {
      const uint32_t koff = (kk / 4) * (kWgBc * 128) + (kk % 4) * 32;
      const uint64_t qd = wg_desc(q_wg + (kk / 4) * (kWgBr * 128) + (kk % 4) * 32, 16, 1024);
      const uint64_t kd = wg_desc(k_s + cur + koff, 16, 1024);
      wgmma_m64n128k16_ss<T>(sc, qd, kd, kk > 0);
    }
    wg_commit();
    wg_wait<0>();
    wg_fence_operands(sc);
    // sc[4 n + 2 h + e]: row (h) of this thread, key base + 8 n + 2 (lane % 4) + e.
    const bool need_mask = base + kWgBc - 1 > wp_lo || (W > 0 && base <= wp_hi - W);
    if (need_mask) {
#pragma unroll
      for (int n = 0; n < 16; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int key = base + n * 8 + 2 * (lane % 4) + (i & 1);
          const int pr = pos_row[i >> 1];
          if (key > pr || (W > 0 && key <= pr - W)) sc[4 * n + i] = -INFINITY;
        }
    }
    float corr[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = m[h];
#pragma unroll
      for (int n = 0; n < 16; ++n) mx = fmaxf(mx, fmaxf(sc[4 * n + 2 * h], sc[4 * n + 2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      // A row with no visible key yet keeps m = -inf: exponents against 0 give p = 0.
      const float m_use = mx == -INFINITY ? 0.0f : mx * scale;
      corr[h] = fast_exp2(m[h] * scale - m_use);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < 16; ++n) {
        sc[4 * n + 2 * h] = fast_exp2(fmaf(sc[4 * n + 2 * h], scale, -m_use));
        sc[4 * n + 2 * h + 1] = fast_exp2(fmaf(sc[4 * n + 2 * h + 1], scale, -m_use));
        sum += sc[4 * n + 2 * h] + sc[4 * n + 2 * h + 1];
      }
      l[h] = l[h] * corr[h] + sum;  // per-lane partial sum; the quad is summed at the end
      m[h] = mx;
    }
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      o[4 * n] *= corr[0];
      o[4 * n + 1] *= corr[0];
      o[4 * n + 2] *= corr[1];
      o[4 * n + 3] *= corr[1];
    }
    // P as the A fragment of k-step kk (keys 16 kk .. 16 kk + 15): the accumulator blocks
    // n = 2 kk, 2 kk + 1 are exactly the m16n8k16 A layout of the thread's warp.
    uint32_t pa[8][4];
#pragma unroll
    for (int kk = 0; kk < 8; ++kk) {
      pa[kk][0] = pack2<T>(sc[8 * kk], sc[8 * kk + 1]);
      pa[kk][1] = pack2<T>(sc[8 * kk + 2], sc[8 * kk + 3]);
      pa[kk][2] = pack2<T>(sc[8 * kk + 4], sc[8 * kk + 5]);
      pa[kk][3] = pack2<T>(sc[8 * kk + 6], sc[8 * kk + 7]);
    }
    wg_fence_operands(o);
    wg_fence_operands(pa);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < kWgBc / 16; ++kk) {
      wgmma_m64n128k16_rs<T>(o, pa[kk], wg_desc(v_s + cur + kk * 2048, kWgBc * 128, 1024));
    }
    wg_commit();
    wg_wait<0>();  // V's buffer is refilled after the next barrier
    wg_fence_operands(o);
  }
  if (!active) return;
    // Normalise into this warpgroup's own Q rows (no other warpgroup reads them; its products
    // are complete), then 16-byte row stores.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = a.v_scale / sum;
    const int r = w0 + 16 * warp + lane / 4 + 8 * h;
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      *reinterpret_cast<uint32_t*>(smem + sw128_offset<kWgBr>(r, n) + 4 * (lane % 4)) =
          pack2<T>(o[4 * n + 2 * h] * inv, o[4 * n + 2 * h + 1] * inv);
    }
  }
  // Named barrier 1 + wg over this warpgroup's 128 threads.
  asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
  T* out = static_cast<T*>(a.out) + static_cast<int64_t>(head) * kWgD;
  const int wtid = tid % 128;
#pragma unroll
  for (int i = wtid; i < 64 * kChunks; i += 128) {
    const int r = w0 + i / kChunks, c = i % kChunks;
    if (r >= rows) break;  // i grows with r
    *reinterpret_cast<uint4*>(out + static_cast<int64_t>(q_begin + r0 + r) * a.num_heads * kWgD +
                              c * 8) =
        *reinterpret_cast<const uint4*>(smem + sw128_offset<kWgBr>(r, c));
  }
}

// The wgmma kernel takes a prefill step when it can: D = 128, cache of the activation type,
// some sequence with more than 64 queries (shorter chunks keep the 64-row mma.sync blocks).
template <typename T>
cudaError_t launch_attention_prefill_wgmma(const AttentionArgs& a, cudaStream_t stream) {
  const int q_tiles = (a.max_q_len + kWgBr - 1) / kWgBr;
  if (q_tiles == 0 || a.num_seqs == 0) return cudaSuccess;
  auto* kernel = attention_prefill_wgmma_kernel<T>;
  const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(kWgSmemBytes));
  if (err != cudaSuccess) return err;
  const dim3 grid(a.num_heads, a.num_seqs, q_tiles);
  kernel<<<grid, kWgThreads, kWgSmemBytes, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
