// Decode attention on tensor cores: one warp per (token t, KV head g, group of HG <= 8 query
// heads of g, split s), K / V tiles of 16 keys through shared memory. Built for short contexts,
// measured faster at long ones too (docs/perf/NOTES.md, session 4).
//
// Why: at ~200-key contexts the split-K stream kernel (attention_decode.cuh) is bound by the
// latency of its per-stream chain (block table -> 4 keys' K / V -> math), ~1.2 TB/s. Here every
// lane of a warp issues its share of the next kStages - 1 tiles with cp.async (16-byte copies,
// one block-table lookup per row) before the current tile's math, so a warp keeps ~8 KB of
// K / V in flight, and the math is mma.sync m16n8k16: S = Q K^T with the HG query heads as the
// rows 0..7 of the 16-row A operand (rows 8..15 are zeros, their accumulators dropped), then
// O += P V with P straight from S's accumulators (flash-attention-2's register reuse).
//
// Layout (gid = lane / 4, tig = lane % 4; the m16n8k16 fragment owners). The sums over d (QK^T)
// and over keys (PV) do not care in which order their terms come, so both are permuted to make
// every shared-memory read a 16-byte one, without bank conflicts:
//  - QK^T: thread tig holds the k indices {2tig, 2tig+1, 2tig+8, 2tig+9} of every k-step; they
//    stand for the 4 consecutive d of the thread's elements 4kk..4kk+3, where its elements are
//    the 16-byte units tig, tig+4, ... of a row. Q (A operand, registers) and K (B) agree.
//  - Key rows: QK^T's column n of n-tile j is key row (n/2) + 4 (n%2) + 8 j of the tile, so the
//    S accumulators of thread tig are keys tig + 4c + 8j, and P's A fragment pairs keys
//    (tig, tig+4) and (tig+8, tig+12): the V rows thread tig reads.
//  - V (B operand of PV, n = output d): thread gid owns D/8 consecutive d of each V row,
//    starting at (D/8) vsel(gid); n-tile dt's column gid is d = (D/8) vsel(gid) + dt. Pairs of
//    keys for one d come from two rows' words by one byte permute.
// Rows in shared memory are padded by 16 bytes; with the permutations above every 8-lane phase
// of a 16-byte read touches 8 different bank groups (fp8 / 16-bit caches, D = 128).
//
// MMA input type M: T for a 16-bit cache (K, V, Q exact); FP16 for an E4M3 cache (E4M3 -> FP16
// is exact, one cvt per two values); a BF16 query is then scaled by a power of two per head so
// that its largest element lies in [2^14, 2^15) (exact in FP16 unless an element is under 2^-28
// of the largest), and the power comes back in the score scale. P is rounded to M (as in the
// prefill kernel). Softmax in float32 with exp2 and the scale applied to the accumulators.
// The K scale of an E4M3 cache is folded into a.scale, its V scale multiplies the output.
//
// Output: as attention_decode_kernel (the output row, or with P > 1 the normalised partial and
// its log2-sum-exp for attention_combine_kernel).
#pragma once

#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

#include "backend/cuda/attention_decode.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

constexpr int kTiledWarps = 4;  // warps (independent work units) per block
constexpr int kTiledKeys = 16;  // keys per tile

// Tiles per warp in shared memory (kStages - 1 in flight during a tile's math): 55 KB (E4M3) /
// 70 KB (16-bit) a block of 4 warps at D = 128; 3 blocks per SM (156 / 168 registers). 4 stages
// for E4M3 measured the same (H100, 1,024 x 193 keys: 175.8 vs 175.6 us).
template <typename C>
constexpr int tiled_stages() {
  return sizeof(C) == 1 ? 3 : 2;
}
template <typename C, int D>
constexpr int tiled_row_bytes() {
  return D * static_cast<int>(sizeof(C)) + 16;
}
template <typename C, int D>
constexpr size_t tiled_smem_bytes() {
  return size_t(kTiledWarps) * tiled_stages<C>() * 2 * kTiledKeys * tiled_row_bytes<C, D>();
}

// Which D/8-wide range of a V row lane group gid reads (a permutation of 0..7): the two gids of
// an 8-lane phase land 64 bytes apart modulo 128 (see the bank note above).
template <int kVBytes>
__device__ __forceinline__ int tiled_vsel(int gid) {
  if constexpr (kVBytes == 16) return (gid >> 1) + 4 * (gid & 1);
  if constexpr (kVBytes == 32) return (gid & 4) | ((gid & 1) << 1) | ((gid >> 1) & 1);
  return gid;
}

// Two E4M3 values (low 16 bits) -> FP16x2, exactly.
__device__ __forceinline__ uint32_t e4m3x2_to_half2(uint32_t two) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two & 0xffffu), __NV_E4M3);
  return static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
}

// c0, c1 (rows gid, columns 2tig, 2tig+1) += A (rows 0..7: a0, a2; rows 8..15 zero) * B.
template <typename M>
__device__ __forceinline__ void mma_top_rows(float& c0, float& c1, uint32_t a0, uint32_t a2,
                                             uint32_t b0, uint32_t b1) {
  float d2, d3;  // rows 8..15: dropped
  const uint32_t z = 0;
  const float zf = 0.0f;
  if constexpr (std::is_same_v<M, __nv_bfloat16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%5}, "
        "{%7,%8}, {%0,%1,%9,%9};\n"
        : "+f"(c0), "+f"(c1), "=f"(d2), "=f"(d3)
        : "r"(a0), "r"(z), "r"(a2), "r"(b0), "r"(b1), "f"(zf));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%5}, "
        "{%7,%8}, {%0,%1,%9,%9};\n"
        : "+f"(c0), "+f"(c1), "=f"(d2), "=f"(d3)
        : "r"(a0), "r"(z), "r"(a2), "r"(b0), "r"(b1), "f"(zf));
  }
}

// Shared memory: per warp, kStages x {K tile, V tile} of [16 keys, D] C, rows padded by 16 B.
// Partials (P > 1): part_o [T, Hq, P, D] float (normalised), part_lse [T, Hq, P] float (log2).
//
// kMinBlocks: resident blocks an SM is built for (the register cap): 3 (156 registers), or 4
// for E4M3 caches under MIXSERVE_DECODE_TILED_BLOCKS=4 (128 registers, 4 x 55 KB of shared
// memory; session 13 measurement).
template <typename T, typename C, int D, int kMinBlocks = 3>
__global__ void __launch_bounds__(kTiledWarps * 32, kMinBlocks)
    attention_decode_tiled_kernel(AttentionArgs a, int num_splits, int split_len, int hg,
                                  int num_units, float* part_o, float* part_lse,
                                  bool tile_rows) {
  constexpr bool kFp8 = sizeof(C) == 1;
  using M = typename std::conditional<kFp8, __half, T>::type;
  constexpr int kU = 16 / static_cast<int>(sizeof(C));  // elements per 16-byte unit
  constexpr int kRow = tiled_row_bytes<C, D>();
  constexpr int kUpr = D / kU;                                  // 16-byte units per row
  constexpr int kKSteps = D / 16;                               // QK^T k-steps
  constexpr int kKUnits = D / 4 / kU;                           // K units a thread reads per row
  constexpr int kDTiles = D / 8;                                // PV n-tiles
  constexpr int kVBytes = D / 8 * static_cast<int>(sizeof(C));  // V bytes a thread reads per row
  constexpr int kVWords = kVBytes / 4;
  constexpr int kStages = tiled_stages<C>();
  constexpr int kTileBytes = kTiledKeys * kRow;
  constexpr int kRowsPerPass = 32 / kUpr;  // rows one pass of the warp's 32 copies covers
  constexpr int kPasses = kTiledKeys / kRowsPerPass;
  static_assert(32 % kUpr == 0 && kTiledKeys % kRowsPerPass == 0 && kKUnits >= 1);
  static_assert(kVBytes == 8 || kVBytes == 16 || kVBytes == 32);

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int unit = blockIdx.x * kTiledWarps + warp;
  if (unit >= num_units) return;  // warp-uniform; no block-wide barrier below
  const int G = a.num_heads / a.num_kv_heads, groups = G / hg;
  const int split = unit % num_splits;
  int rest = unit / num_splits;
  const int grp = rest % groups;
  rest /= groups;
  const int g = rest % a.num_kv_heads, t = rest / a.num_kv_heads;
  const int h0 = g * G + grp * hg;
  const int seq = a.seq_of_token[t];
  const int p = a.positions[t];
  if (token_in_prefill(a, seq)) return;
  const int gid = lane >> 2, tig = lane & 3;

  const int first = a.sliding_window > 0 ? max(0, p - a.sliding_window + 1) : 0;
  const int lo = first + split * split_len, hi = min(p + 1, lo + split_len);
  const int ntiles = hi > lo ? (hi - lo + kTiledKeys - 1) / kTiledKeys : 0;

  extern __shared__ __align__(16) unsigned char tiled_smem[];
  unsigned char* wsm = tiled_smem + warp * kStages * 2 * kTileBytes;
  const uint32_t wsm_addr = static_cast<uint32_t>(__cvta_generic_to_shared(wsm));

  // K / V rows of tile `tile` into stage `stage`: lane copies unit lane % kUpr of rows
  // lane / kUpr + i * kRowsPerPass (zero-filled past hi: no NaN garbage reaches the MMAs).
  const C* k_cache = static_cast<const C*>(a.k_cache);
  const C* v_cache = static_cast<const C*>(a.v_cache);
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int bs = a.block_size;
  const int shift = (bs & (bs - 1)) == 0 ? __ffs(bs) - 1 : -1;
  const int cu = lane % kUpr, crow = lane / kUpr;
  auto block_of = [&](int pos) { return shift >= 0 ? pos >> shift : pos / bs; };
  // A tile starting at a multiple of 16 with a block size that is a multiple of 16 (the
  // engine's 16; splits are multiples of 16 keys) lies in one block and is one 16-slot tile of
  // the pool (kv_layout.h): its rows of head g are consecutive, found by one (warp-uniform)
  // block-table load. Other tiles look up every row. tile_rows: MIXSERVE_DECODE_WHOLE_TILES.
  const bool whole_tiles = tile_rows && bs % kKvTile == 0 && lo % kKvTile == 0;
  auto issue = [&](int tile, int stage) {
    const int base = lo + tile * kTiledKeys;
    const uint32_t dst0 = wsm_addr + stage * 2 * kTileBytes + crow * kRow + cu * 16;
    if (whole_tiles) {
      const int blk = block_of(base);
      const int64_t slot0 = static_cast<int64_t>(__ldg(table + blk)) * bs + (base - blk * bs);
      const C* k0 = k_cache + kv_row(slot0, g, a.num_kv_heads) * D + crow * D + cu * kU;
      const C* v0 = v_cache + (k0 - k_cache);
#pragma unroll
      for (int i = 0; i < kPasses; ++i) {
        const bool valid = base + crow + i * kRowsPerPass < hi;
        const uint32_t dst = dst0 + i * kRowsPerPass * kRow;
        cp_async16(dst, valid ? k0 + i * kRowsPerPass * D : k_cache, valid);
        cp_async16(dst + kTileBytes, valid ? v0 + i * kRowsPerPass * D : v_cache, valid);
      }
      return;
    }
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int pos = base + crow + i * kRowsPerPass;
      const bool valid = pos < hi;
      int64_t off = 0;
      if (valid) {
        const int blk = block_of(pos);
        const int64_t slot = static_cast<int64_t>(__ldg(table + blk)) * bs + (pos - blk * bs);
        off = kv_row(slot, g, a.num_kv_heads) * D + cu * kU;
      }
      const uint32_t dst = dst0 + i * kRowsPerPass * kRow;
      cp_async16(dst, k_cache + off, valid);
      cp_async16(dst + kTileBytes, v_cache + off, valid);
    }
  };

  // Q fragments of row gid (head h0 + gid; zeros past hg): k-step kk holds the elements
  // 4kk..4kk+3 of the thread's units, i.e. d = kU (tig + 4 (4kk / kU)) + 4kk % kU + 0..3.
  // The raw loads go out before the block table's and the first tiles' copies.
  uint2 qraw[kKSteps];
  {
    const T* qrow = static_cast<const T*>(a.q) + t * a.q_stride +
                    static_cast<int64_t>(h0 + min(gid, hg - 1)) * D;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const int e = 4 * kk;
      const int d = kU * (tig + 4 * (e / kU)) + e % kU;
      qraw[kk] = make_uint2(0, 0);
      if (gid < hg) qraw[kk] = *reinterpret_cast<const uint2*>(qrow + d);
    }
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < ntiles) issue(s, s);
    cp_async_commit();
  }

  uint32_t qa[kKSteps][2];
  float qscale;
  {
    float qf[kKSteps][4];
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const T* q4 = reinterpret_cast<const T*>(&qraw[kk]);
#pragma unroll
      for (int i = 0; i < 4; ++i) qf[kk][i] = to_float(q4[i]);
    }
    float pre = 1.0f;
    if constexpr (kFp8 && std::is_same_v<T, __nv_bfloat16>) {
      float amax = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk)
#pragma unroll
        for (int i = 0; i < 4; ++i) amax = fmaxf(amax, fabsf(qf[kk][i]));
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
      int ex = 0;
      frexpf(amax, &ex);  // amax = f 2^ex, f in [0.5, 1)
      if (amax > 0.0f && amax < INFINITY) pre = ldexpf(1.0f, 15 - ex);
    }
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      qa[kk][0] = pack2<M>(qf[kk][0] * pre, qf[kk][1] * pre);
      qa[kk][1] = pack2<M>(qf[kk][2] * pre, qf[kk][3] * pre);
    }
    qscale = a.scale * kLog2e / pre;
  }

  float o[kDTiles][2];
#pragma unroll
  for (int dt = 0; dt < kDTiles; ++dt) o[dt][0] = o[dt][1] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // row gid: running max (log2 units), this lane's partial sum
  const int krow0 = (gid >> 1) + 4 * (gid & 1);  // K row of QK^T column gid (n-tile 0)
  const int vsel = tiled_vsel<kVBytes>(gid);

  for (int i = 0; i < ntiles; ++i) {
    if (i + kStages - 1 < ntiles) issue(i + kStages - 1, (i + kStages - 1) % kStages);
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncwarp();  // every lane's copies of tile i have landed
    const unsigned char* kt = wsm + (i % kStages) * 2 * kTileBytes;
    const unsigned char* vt = kt + kTileBytes;

    // S = Q K^T for the tile's 16 keys (two n-tiles of 8).
    float s[2][2];
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const unsigned char* krow = kt + (krow0 + 8 * j) * kRow;
      uint4 kr[kKUnits];
#pragma unroll
      for (int u = 0; u < kKUnits; ++u)
        kr[u] = *reinterpret_cast<const uint4*>(krow + (tig + 4 * u) * 16);
      s[j][0] = s[j][1] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk) {
        const int e = 4 * kk;
        const uint32_t* w = reinterpret_cast<const uint32_t*>(&kr[e / kU]);
        uint32_t b0, b1;
        if constexpr (kFp8) {
          const uint32_t word = w[(e % kU) / 4];
          b0 = e4m3x2_to_half2(word);
          b1 = e4m3x2_to_half2(word >> 16);
        } else {
          b0 = w[(e % kU) / 2];
          b1 = w[(e % kU) / 2 + 1];
        }
        mma_top_rows<M>(s[j][0], s[j][1], qa[kk][0], qa[kk][1], b0, b1);
      }
    }

    // Online softmax of row gid over the tile's keys tig + 4c + 8j (masked past hi).
    const int base = lo + i * kTiledKeys;
    float mt = -INFINITY;
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        s[j][c] = base + tig + 4 * c + 8 * j < hi ? s[j][c] * qscale : -INFINITY;
        mt = fmaxf(mt, s[j][c]);
      }
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
    const float m_new = fmaxf(m, mt);         // finite: the tile has a key below hi
    const float corr = fast_exp2(m - m_new);  // m = -inf: 0
    l *= corr;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      o[dt][0] *= corr;
      o[dt][1] *= corr;
    }
    float pr[2][2];
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        pr[j][c] = fast_exp2(s[j][c] - m_new);
        l += pr[j][c];
      }
    m = m_new;
    const uint32_t pa0 = pack2<M>(pr[0][0], pr[0][1]);  // keys tig, tig + 4
    const uint32_t pa2 = pack2<M>(pr[1][0], pr[1][1]);  // keys tig + 8, tig + 12

    // O += P V: V rows tig + 4r, the thread's D/8 d of each.
    uint32_t vw[4][kVWords];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const unsigned char* vrow = vt + (tig + 4 * r) * kRow + vsel * kVBytes;
#pragma unroll
      for (int w = 0; w < kVWords; w += 4) {
        if constexpr (kVWords >= 4) {
          const uint4 x = *reinterpret_cast<const uint4*>(vrow + 4 * w);
          vw[r][w] = x.x, vw[r][w + 1] = x.y, vw[r][w + 2] = x.z, vw[r][w + 3] = x.w;
        } else {
          const uint2 x = *reinterpret_cast<const uint2*>(vrow);
          vw[r][0] = x.x, vw[r][1] = x.y;
        }
      }
    }
#pragma unroll
    for (int w = 0; w < kVWords; ++w) {
      if constexpr (kFp8) {
        // Bytes b of rows (tig, tig+4) and (tig+8, tig+12): d = 4w + b.
        const uint32_t lo01 = __byte_perm(vw[0][w], vw[1][w], 0x5140);
        const uint32_t hi01 = __byte_perm(vw[0][w], vw[1][w], 0x7362);
        const uint32_t lo23 = __byte_perm(vw[2][w], vw[3][w], 0x5140);
        const uint32_t hi23 = __byte_perm(vw[2][w], vw[3][w], 0x7362);
        mma_top_rows<M>(o[4 * w][0], o[4 * w][1], pa0, pa2, e4m3x2_to_half2(lo01),
                        e4m3x2_to_half2(lo23));
        mma_top_rows<M>(o[4 * w + 1][0], o[4 * w + 1][1], pa0, pa2, e4m3x2_to_half2(lo01 >> 16),
                        e4m3x2_to_half2(lo23 >> 16));
        mma_top_rows<M>(o[4 * w + 2][0], o[4 * w + 2][1], pa0, pa2, e4m3x2_to_half2(hi01),
                        e4m3x2_to_half2(hi23));
        mma_top_rows<M>(o[4 * w + 3][0], o[4 * w + 3][1], pa0, pa2, e4m3x2_to_half2(hi01 >> 16),
                        e4m3x2_to_half2(hi23 >> 16));
      } else {
        // Halves h of rows (tig, tig+4) and (tig+8, tig+12): d = 2w + h.
        mma_top_rows<M>(o[2 * w][0], o[2 * w][1], pa0, pa2, __byte_perm(vw[0][w], vw[1][w], 0x5410),
                        __byte_perm(vw[2][w], vw[3][w], 0x5410));
        mma_top_rows<M>(o[2 * w + 1][0], o[2 * w + 1][1], pa0, pa2,
                        __byte_perm(vw[0][w], vw[1][w], 0x7632),
                        __byte_perm(vw[2][w], vw[3][w], 0x7632));
      }
    }
    __syncwarp();  // the stage is read: the next iteration may refill it
  }

  // Row gid's sum over its 4 lanes; columns 2tig, 2tig+1 of n-tile dt are d = (D/8) vsel + dt.
  l += __shfl_xor_sync(0xffffffffu, l, 1);
  l += __shfl_xor_sync(0xffffffffu, l, 2);
  if (gid >= hg) return;
  const int head = h0 + gid;
  const int d0 = D / 8 * tiled_vsel<kVBytes>(2 * tig),
            d1 = D / 8 * tiled_vsel<kVBytes>(2 * tig + 1);
  const float inv = l > 0.0f ? a.v_scale / l : 0.0f;
  if (num_splits == 1) {
    T* out = static_cast<T*>(a.out) + (static_cast<int64_t>(t) * a.num_heads + head) * D;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      out[d0 + dt] = from_float<T>(o[dt][0] * inv);
      out[d1 + dt] = from_float<T>(o[dt][1] * inv);
    }
  } else {
    const int64_t row = (static_cast<int64_t>(t) * a.num_heads + head) * num_splits + split;
    float* po = part_o + row * D;
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt) {
      po[d0 + dt] = o[dt][0] * inv;
      po[d1 + dt] = o[dt][1] * inv;
    }
    if (tig == 0) part_lse[row] = l > 0.0f ? m + log2f(l) : -INFINITY;
  }
}

// MIXSERVE_DECODE_TILED_BLOCKS=4: the 4-blocks-an-SM build for E4M3 caches (attention.cu).
int decode_tiled_blocks();
// MIXSERVE_DECODE_WHOLE_TILES=1: one block-table load per whole 16-key tile (attention.cu).
bool decode_whole_tiles();

template <typename T, typename C, int D>
cudaError_t launch_attention_decode_tiled(const AttentionArgs& a, const DecodeSplitPlan& plan,
                                          cudaStream_t stream) {
  const int G = a.num_heads / a.num_kv_heads;
  const int hg = decode_heads_per_group(G);
  const int64_t units = int64_t(a.num_tokens) * a.num_kv_heads * (G / hg) * plan.num_splits;
  if (units > (int64_t(1) << 31) - kTiledWarps) return cudaErrorInvalidValue;
  constexpr size_t smem = tiled_smem_bytes<C, D>();
  // 4 blocks of smem (+ 1 KB each reserved by the driver) fit the SM's 228 KB for E4M3 only.
  constexpr bool kCanFour = sizeof(C) == 1 && 4 * (smem + 1024) <= 228 * 1024;
  const bool four = kCanFour && decode_tiled_blocks() == 4;
  auto* kernel = four ? attention_decode_tiled_kernel<T, C, D, kCanFour ? 4 : 3>
                      : attention_decode_tiled_kernel<T, C, D, 3>;
  if constexpr (smem > 48 * 1024) {
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(smem));
    // The largest shared-memory carveout, so that 4 blocks fit (the 3-block build keeps the
    // driver's choice, as measured).
    if (err == cudaSuccess && four) {
      err = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    }
    if (err != cudaSuccess) return err;
  }
  float* part_o = static_cast<float*>(a.workspace);
  float* part_lse = part_o + size_t(a.num_tokens) * a.num_heads * plan.num_splits * D;
  const int blocks = static_cast<int>((units + kTiledWarps - 1) / kTiledWarps);
  kernel<<<blocks, kTiledWarps * 32, smem, stream>>>(a, plan.num_splits, plan.split_len, hg,
                                                     static_cast<int>(units), part_o, part_lse,
                                                     decode_whole_tiles());
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || plan.num_splits == 1) return err;
  attention_combine_kernel<T, D>
      <<<dim3(a.num_tokens, a.num_heads), D, 0, stream>>>(a, plan.num_splits, part_o, part_lse);
  return cudaGetLastError();
}

// The decode kernel the plan names.
template <typename T, typename C, int D>
cudaError_t launch_attention_decode_planned(const AttentionArgs& a, const DecodeSplitPlan& plan,
                                            cudaStream_t stream) {
  if (plan.tiled) return launch_attention_decode_tiled<T, C, D>(a, plan, stream);
  return launch_attention_decode<T, C, D>(a, plan, stream);
}

}  // namespace mixserve::cuda
