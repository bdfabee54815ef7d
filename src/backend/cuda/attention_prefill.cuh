// Paged causal attention for prefill chunks with tensor cores (flash-attention-2 style), for
// D = 64 / 128 in BF16 or FP16.
//
// Shapes: S sequences, Qs = query tokens of sequence s in this step (seq_offsets), Hq / Hkv
// heads, D head dim. Br = 32 x warps queries per block (32 rows per warp: two m16 tiles that
// share every K / V fragment), Bc = 64 keys per tile.
//
// One block (4 warps, Br 128; 2 warps, Br 64, when no sequence has more than 64 queries) per
// (Br-query tile of sequence s, query head); 255 registers, 2 blocks (8 warps) per SM. Grid
// (Hq, S, tiles) with the tile slowest and reversed: the latest query tiles (the most keys) of
// every head start first, and neighbouring blocks share a KV head (GQA) in L2. Q stays in
// shared memory (32 rows x D per warp, re-read with ldmatrix per key tile: Q fragments, S and O
// of 32 rows do not fit in 255 registers together). The block table is walked once per tile
// (one division by the block size per key, by Bc threads, two tiles ahead) into shared memory;
// K and V tiles are read with cp.async into swizzled shared memory, double-buffered: tile j+1
// loads during tile j's math, one barrier per tile. mma.sync m16n8k16 (half inputs, float32
// accumulation); ldmatrix addresses are one register per operand XORed per k-step. The online
// softmax (float32, exp2 with the scale folded into one FMA) lives in the accumulator
// registers, each thread owning 4 rows; S through O += P V is one basic block (no branch on
// whether the max moved). Keys past a warp's last row (causal) or before its window are skipped
// per warp; only tiles crossing a row's causal or window edge are masked. The output goes
// through the warp's own Q rows in shared memory, then to global in 16-byte row stores.
// Sequences with fewer than prefill_min_q queries are left to attention_decode_kernel.
// An E4M3 cache (C = __nv_fp8_e4m3) cannot feed cp.async -> ldmatrix -> mma directly: each
// thread loads its 8-byte chunks of tile j+1 into registers (K after the barrier, V after the
// softmax), converts them to T and stores them into the free buffers (K before O += P V, V
// after it). The K scale is folded into a.scale, the V scale multiplies the output.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/cuda/attention_decode.cuh"
#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

constexpr int kPrefillBc = 64;        // keys per tile
constexpr int kPrefillWarpRows = 32;  // query rows per warp

// Byte offset of 16-byte chunk `chunk` of row `row` in a [rows, D] half tile: chunks are
// XOR-swizzled by row % 8 so that ldmatrix's 8 row reads hit 8 different bank groups.
template <int D>
__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return static_cast<uint32_t>(row * D * 2 + ((chunk ^ (row & 7)) << 4));
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;  // 0: zero-fill (keys past the range must not be NaN garbage)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                        uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                          uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// c[4] += a[4] (16x16, row) * b[2] (16x8, col), half inputs, float accumulation.
template <typename T>
__device__ __forceinline__ void mma16816(float* c, const uint32_t* a, const uint32_t* b) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  T v[2] = {from_float<T>(lo), from_float<T>(hi)};
  return *reinterpret_cast<uint32_t*>(v);
}

// 8 E4M3 values (one 8-byte load) -> 8 T (16 bytes, one shared-memory chunk).
template <typename T>
__device__ __forceinline__ uint4 fp8x8_to_half(uint2 raw) {
  const __nv_fp8_e4m3* e = reinterpret_cast<const __nv_fp8_e4m3*>(&raw);
  uint4 out;
  uint32_t* w = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
  for (int i = 0; i < 4; ++i) w[i] = pack2<T>(to_float(e[2 * i]), to_float(e[2 * i + 1]));
  return out;
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Shared memory (byte offsets): q_s [Br, D], k_s [2, Bc, D], v_s [2, Bc, D] (T, swizzled; tiles
// j and j + 1), rows_s [2, Bc] int64 (cache element offset of each key of a tile, -1 past the
// range; tiles j + 1 and j + 2).
// C: the cache element type (T, or __nv_fp8_e4m3). kWarps: 4 (Br 128) or 2 (Br 64).
template <typename T, typename C, int D, int kWarps>
__global__ void __launch_bounds__(kWarps * 32, 8 / kWarps)
    attention_prefill_kernel(AttentionArgs a) {
  constexpr bool kFp8 = !std::is_same_v<C, T>;
  constexpr int kThreads = kWarps * 32;
  constexpr int kBr = kWarps * kPrefillWarpRows;
  constexpr int kChunks = D / 8;  // 8-element chunks per row (16 bytes in shared memory)
  constexpr int kRowsPerPass = kThreads / kChunks;  // tile rows one pass of the block covers
  constexpr int kKvPasses = kPrefillBc / kRowsPerPass;
  static_assert(kThreads % kChunks == 0 && kPrefillBc % kRowsPerPass == 0);
  constexpr int kKSteps = D / 16;
  constexpr int kDTiles = D / 8;
  constexpr int kNTiles = kPrefillBc / 8;
  constexpr uint32_t kTile = kPrefillBc * D * 2;  // bytes of one K or V tile
  constexpr uint32_t kOffK = kBr * D * 2, kOffV = kOffK + 2 * kTile, kOffRows = kOffV + 2 * kTile;
  static_assert(kThreads >= kPrefillBc);
  const int head = blockIdx.x, s = blockIdx.y;
  // The last query tiles see the most keys: start them first.
  const int tile = gridDim.z - 1 - blockIdx.z;
  const int q_begin = a.seq_offsets[s], q_len = a.seq_offsets[s + 1] - q_begin;
  const int r0 = tile * kBr;
  if (q_len < a.prefill_min_q || r0 >= q_len) return;
  const int rows = min(kBr, q_len - r0);
  const int g = head / (a.num_heads / a.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  extern __shared__ __align__(1024) unsigned char smem[];  // see the fragment addresses
  const uint32_t q_s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t k_s = q_s + kOffK, v_s = q_s + kOffV;

  // Visible keys of the block's rows: [kv_lo, p_hi] (a chunk's positions are increasing).
  const int32_t* pos = a.positions + q_begin + r0;
  const int p_lo = pos[0], p_hi = pos[rows - 1];
  const int W = a.sliding_window;
  const int kv_lo = W > 0 ? max(0, p_lo - W + 1) : 0;
  const int kv_first_tile = kv_lo / kPrefillBc * kPrefillBc;
  const int num_tiles = (p_hi + 1 - kv_first_tile + kPrefillBc - 1) / kPrefillBc;
  // This warp's rows [w0, w0 + 32) and their positions; a warp past the last row only loads.
  const int w0 = warp * kPrefillWarpRows;
  const bool active = w0 < rows;
  const int wp_lo = pos[min(w0, rows - 1)], wp_hi = pos[min(w0 + kPrefillWarpRows - 1, rows - 1)];
  // This thread's 4 rows: w0 + 16 mt + lane / 4 + 8 h, index i = 2 mt + h.
  int pos_row[4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
    pos_row[i] = pos[min(w0 + 16 * (i / 2) + lane / 4 + 8 * (i % 2), rows - 1)];

  const T* qbase = static_cast<const T*>(a.q) + static_cast<int64_t>(head) * D;
  for (int i = threadIdx.x; i < kBr * kChunks; i += kThreads) {
    const int r = i / kChunks, ch = i % kChunks;
    const int t = q_begin + r0 + min(r, rows - 1);  // rows past the end: zeros
    cp_async16(q_s + swz<D>(r, ch), qbase + t * a.q_stride + ch * 8, r < rows);
  }
  const C* k_cache = static_cast<const C*>(a.k_cache);
  const C* v_cache = static_cast<const C*>(a.v_cache);
  const int32_t* table = a.block_tables + static_cast<int64_t>(s) * a.max_blocks_per_seq;
  // The block-table walk (a division by the block size per key) is done once per tile, by the
  // first Bc threads, into rows_s[j % 2]; K and V loads of every thread read it from there.
  int64_t* rows_s = reinterpret_cast<int64_t*>(smem + kOffRows);
  auto walk_tile = [&](int j) {
    const int p = kv_first_tile + j * kPrefillBc + threadIdx.x;
    if (threadIdx.x < kPrefillBc) {
      rows_s[(j & 1) * kPrefillBc + threadIdx.x] =
          p <= p_hi ? paged_row(table, p, a.block_size, a.num_kv_heads, g, D) : -1;
    }
  };
  // Thread's share of a tile: chunk ch of rows row0 + u * kRowsPerPass.
  const int ch = threadIdx.x % kChunks, row0 = threadIdx.x / kChunks;
  // K and V of tile j into the buffers at byte offset buf (one table lookup for both).
  auto load_tile = [&](uint32_t buf, int j) {
    const int64_t* rs = rows_s + (j & 1) * kPrefillBc;
#pragma unroll
    for (int u = 0; u < kKvPasses; ++u) {
      const int r = row0 + u * kRowsPerPass;
      const int64_t row = rs[r];
      const bool valid = row >= 0;  // zero-fill past the range (no NaN garbage)
      const int64_t off = valid ? row + ch * 8 : 0;
      cp_async16(k_s + buf + swz<D>(r, ch), k_cache + off, valid);
      cp_async16(v_s + buf + swz<D>(r, ch), v_cache + off, valid);
    }
  };
  // FP8: one tile's raw chunks (zeros past p_hi), fetched a phase ahead, stored after a barrier.
  uint2 raw[kKvPasses];  // unused (and dropped) unless kFp8
  auto fetch_tile = [&](const C* cache, int j) {
    const int64_t* rs = rows_s + (j & 1) * kPrefillBc;
#pragma unroll
    for (int u = 0; u < kKvPasses; ++u) {
      const int64_t row = rs[row0 + u * kRowsPerPass];
      raw[u] = make_uint2(0, 0);
      if (row >= 0) raw[u] = __ldg(reinterpret_cast<const uint2*>(cache + row + ch * 8));
    }
  };
  auto store_tile = [&](uint32_t off) {
#pragma unroll
    for (int u = 0; u < kKvPasses; ++u) {
      *reinterpret_cast<uint4*>(smem + off + swz<D>(row0 + u * kRowsPerPass, ch)) =
          fp8x8_to_half<T>(raw[u]);
    }
  };
  walk_tile(0);
  if (num_tiles > 1) walk_tile(1);
  __syncthreads();
  if constexpr (kFp8) {
    fetch_tile(k_cache, 0);
    store_tile(kOffK);
    fetch_tile(v_cache, 0);
    store_tile(kOffV);
  } else {
    load_tile(0, 0);
  }
  cp_async_commit();

  const float scale = a.scale * kLog2e;
  float o[2][kDTiles][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int d = 0; d < kDTiles; ++d) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.0f;
  float m[4], l[4];  // running max (raw score units) and this lane's partial sum, per row
#pragma unroll
  for (int i = 0; i < 4; ++i) m[i] = -INFINITY, l[i] = 0.0f;

  // FP8, between S and O += P V: K of tile j + 1 into its buffer (last read before this
  // iteration's barrier), V's chunks fetched.
  auto fp8_mid = [&](int j, uint32_t next) {
    if constexpr (kFp8) {
      if (j + 1 < num_tiles) {
        store_tile(kOffK + next);
        fetch_tile(v_cache, j + 1);
      }
    }
  };
  for (int j = 0; j < num_tiles; ++j) {
    const int base = kv_first_tile + j * kPrefillBc;
    const uint32_t cur = (j & 1) * kTile, next = kTile - cur;  // buffers of tiles j, j + 1
    cp_async_wait<0>();
    __syncthreads();  // tile j (and Q) landed; every warp is done with tile j - 1's buffers
    if (j + 1 < num_tiles) {
      if constexpr (kFp8) {
        fetch_tile(k_cache, j + 1);  // stored after the softmax, V's after O += P V
      } else {
        load_tile(next, j + 1);
        cp_async_commit();
      }
    }
    // rows_s[j % 2]'s readers (tile j's loads, issued during iteration j - 1) are past; tile
    // j + 2's first reader comes after the next barrier.
    if (j + 2 < num_tiles) walk_tile(j + 2);
    // Warp-uniform: the tile holds no key any of this warp's rows sees.
    const bool skip = !active || base > wp_hi || (W > 0 && base + kPrefillBc - 1 <= wp_lo - W);
    // S [32, Bc] of this warp = Q K^T, as two m16 tiles.
    float sc[2][kNTiles][4];
    if (!skip) {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int n = 0; n < kNTiles; ++n)
          sc[mt][n][0] = sc[mt][n][1] = sc[mt][n][2] = sc[mt][n][3] = 0.0f;
      // Fragment addresses: every fragment row r has r % 8 == lane % 8, so for b in {0, 1}
      // swz<D>(r, 2k + b) == swz<D>(r, b) ^ (k << 5) (k << 5 < 2D sets no bit of r * 2D; the
      // shared-memory base is 1024-aligned): one lane address per operand, an XOR per k-step.
      const uint32_t q_lane = q_s + swz<D>(w0 + (lane % 8) + 8 * ((lane / 8) % 2), lane / 16);
      const uint32_t k_lane = k_s + cur + swz<D>((lane % 8) + 8 * (lane / 16), (lane / 8) % 2);
#pragma unroll
      for (int k = 0; k < kKSteps; ++k) {
        uint32_t qa[2][4];
        const uint32_t qk = q_lane ^ (k << 5), kk = k_lane ^ (k << 5);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          ldsm_x4(qk + mt * 32 * D, qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3]);  // +16 rows
        }
#pragma unroll
        for (int n = 0; n < kNTiles; n += 2) {
          uint32_t b[4];
          ldsm_x4(kk + n * 16 * D, b[0], b[1], b[2], b[3]);  // + 8 n rows
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma16816<T>(sc[mt][n], qa[mt], b);
            mma16816<T>(sc[mt][n + 1], qa[mt], b + 2);
          }
        }
      }
      const bool need_mask = base + kPrefillBc - 1 > wp_lo || (W > 0 && base <= wp_hi - W);
      if (need_mask) {
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
          for (int n = 0; n < kNTiles; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int key = base + n * 8 + 2 * (lane % 4) + (e & 1);
              const int pr = pos_row[2 * mt + (e >> 1)];
              if (key > pr || (W > 0 && key <= pr - W)) sc[mt][n][e] = -INFINITY;
            }
      }
      // Online softmax per row (the 4 lanes of a quad share a row).
      float corr[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int mt = i / 2, h = i % 2;
        float mx = m[i];
#pragma unroll
        for (int n = 0; n < kNTiles; ++n)
          mx = fmaxf(mx, fmaxf(sc[mt][n][2 * h], sc[mt][n][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        // A row with no visible key yet keeps m = -inf: exponents against 0 give p = 0.
        const float m_use = mx == -INFINITY ? 0.0f : mx * scale;
        corr[i] = fast_exp2(m[i] * scale - m_use);  // m = -inf: 0 (o and l are 0 anyway)
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < kNTiles; ++n) {
          sc[mt][n][2 * h] = fast_exp2(fmaf(sc[mt][n][2 * h], scale, -m_use));
          sc[mt][n][2 * h + 1] = fast_exp2(fmaf(sc[mt][n][2 * h + 1], scale, -m_use));
          sum += sc[mt][n][2 * h] + sc[mt][n][2 * h + 1];
        }
        l[i] = l[i] * corr[i] + sum;  // per-lane partial sum; the quad is summed at the end
        m[i] = mx;
      }
      // Unconditional (no branch): one basic block from the softmax through O += P V lets
      // the scheduler overlap the exponentials with the first P V products.
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int d = 0; d < kDTiles; ++d) {
          o[mt][d][0] *= corr[2 * mt];
          o[mt][d][1] *= corr[2 * mt];
          o[mt][d][2] *= corr[2 * mt + 1];
          o[mt][d][3] *= corr[2 * mt + 1];
        }
      fp8_mid(j, next);
      // O [32, D] += P [32, Bc] V [Bc, D]; P's accumulator layout is the A fragment layout.
      // V rows 16 k + lane % 8 (+ 8), chunks d + lane / 16 (d even): as for Q and K above,
      // swz<D>(r, d + b) == swz<D>(r, b) ^ (d << 4).
      const uint32_t v_lane = v_s + cur + swz<D>((lane % 8) + 8 * ((lane / 8) % 2), lane / 16);
#pragma unroll
      for (int k = 0; k < kPrefillBc / 16; ++k) {
        uint32_t pa[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          pa[mt][0] = pack2<T>(sc[mt][2 * k][0], sc[mt][2 * k][1]);
          pa[mt][1] = pack2<T>(sc[mt][2 * k][2], sc[mt][2 * k][3]);
          pa[mt][2] = pack2<T>(sc[mt][2 * k + 1][0], sc[mt][2 * k + 1][1]);
          pa[mt][3] = pack2<T>(sc[mt][2 * k + 1][2], sc[mt][2 * k + 1][3]);
        }
#pragma unroll
        for (int d = 0; d < kDTiles; d += 2) {
          uint32_t b[4];
          ldsm_x4_t((v_lane ^ (d << 4)) + k * 32 * D, b[0], b[1], b[2], b[3]);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma16816<T>(o[mt][d], pa[mt], b);
            mma16816<T>(o[mt][d + 1], pa[mt], b + 2);
          }
        }
      }
    } else {
      fp8_mid(j, next);
    }
    if constexpr (kFp8) {
      if (j + 1 < num_tiles) store_tile(kOffV + next);
    }
  }
  // Normalise into the warp's own Q rows (no other warp reads them), then 16-byte stores.
  if (!active) return;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int mt = i / 2, h = i % 2;
    float sum = l[i];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = a.v_scale / sum;
    const int r = w0 + 16 * mt + lane / 4 + 8 * h;
#pragma unroll
    for (int d = 0; d < kDTiles; ++d) {
      *reinterpret_cast<uint32_t*>(smem + swz<D>(r, d) + 4 * (lane % 4)) =
          pack2<T>(o[mt][d][2 * h] * inv, o[mt][d][2 * h + 1] * inv);
    }
  }
  __syncwarp();
  T* out = static_cast<T*>(a.out) + static_cast<int64_t>(head) * D;
#pragma unroll
  for (int i = lane; i < kPrefillWarpRows * kChunks; i += 32) {
    const int r = w0 + i / kChunks, c = i % kChunks;
    if (r >= rows) break;  // i grows with r
    *reinterpret_cast<uint4*>(out + static_cast<int64_t>(q_begin + r0 + r) * a.num_heads * D +
                              c * 8) = *reinterpret_cast<const uint4*>(smem + swz<D>(r, c));
  }
}

template <typename T, typename C, int D, int kWarps>
cudaError_t launch_prefill_tiles(const AttentionArgs& a, cudaStream_t stream) {
  constexpr int kBr = kWarps * kPrefillWarpRows;
  const int q_tiles = (a.max_q_len + kBr - 1) / kBr;
  if (q_tiles == 0 || a.num_seqs == 0) return cudaSuccess;
  const size_t smem = size_t(kBr + 4 * kPrefillBc) * D * sizeof(T) + 2 * kPrefillBc * 8;
  auto* kernel = attention_prefill_kernel<T, C, D, kWarps>;
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(a.num_heads, a.num_seqs, q_tiles);
  kernel<<<grid, kWarps * 32, smem, stream>>>(a);
  return cudaGetLastError();
}

template <typename T, typename C, int D>
cudaError_t launch_attention_prefill(const AttentionArgs& a, cudaStream_t stream) {
  // Short chunks only: 64-row blocks leave less of the tile empty.
  if (a.max_q_len <= 64) return launch_prefill_tiles<T, C, D, 2>(a, stream);
  return launch_prefill_tiles<T, C, D, 4>(a, stream);
}

}  // namespace mixserve::cuda
