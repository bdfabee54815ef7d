// Paged causal attention for prefill chunks with tensor cores (flash-attention-2 style), for
// D = 64 / 128 in BF16 or FP16.
//
// Shapes: S sequences, Qs = query tokens of sequence s in this step (seq_offsets), Hq / Hkv
// heads, D head dim. Br = 64 queries per block (16 per warp), Bc = 64 keys per tile.
//
// One block (4 warps) per (64-query tile of sequence s, query head). The Q tile is loaded once
// (cp.async -> shared -> ldmatrix into mma A fragments kept in registers); K and V tiles of
// the visible key range are read through the block table with cp.async into swizzled shared
// memory, double-buffered (tile j+1 loads while tile j is used). S = Q K^T and O += P V run on
// mma.sync m16n8k16 (half inputs, float32 accumulation); the online softmax (float32, exp2 with
// the scale folded in) lives in the accumulator registers, each thread owning 2 rows. Only
// tiles that cross a row's causal edge or its sliding-window edge are masked.
// Sequences with fewer than prefill_min_q queries are left to attention_decode_kernel.
// An E4M3 cache (C = __nv_fp8_e4m3) cannot feed cp.async -> ldmatrix -> mma directly: each
// thread loads its 8-byte chunks of tile j+1 into registers before tile j's math, converts them
// to T after it and stores them into the other buffer (same swizzled layout). The K scale is
// folded into a.scale, the V scale multiplies the output.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/cuda/attention_decode.cuh"
#include "backend/cuda/dtype_traits.cuh"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

constexpr int kPrefillBr = 64;
constexpr int kPrefillBc = 64;
constexpr int kPrefillThreads = 128;

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

// Shared memory: k_s [2, Bc, D], v_s [2, Bc, D] (T, swizzled); q_s [Br, D] = v_s[1] at first.
// C: the cache element type (T, or __nv_fp8_e4m3).
template <typename T, typename C, int D>
__global__ void __launch_bounds__(kPrefillThreads, 3) attention_prefill_kernel(AttentionArgs a) {
  constexpr bool kFp8 = !std::is_same_v<C, T>;
  constexpr int kChunks = D / 8;  // 8-element chunks per row (16 bytes in shared memory)
  constexpr int kKvPerThread = kPrefillBc * kChunks / kPrefillThreads;  // FP8 chunks per thread
  static_assert(kPrefillBc * kChunks % kPrefillThreads == 0);
  constexpr int kKSteps = D / 16;
  constexpr int kDTiles = D / 8;
  constexpr int kNTiles = kPrefillBc / 8;
  const int s = blockIdx.y, head = blockIdx.z;
  const int q_begin = a.seq_offsets[s], q_len = a.seq_offsets[s + 1] - q_begin;
  // The last query tiles see the most keys: start them first.
  const int tile = gridDim.x - 1 - blockIdx.x;
  const int r0 = tile * kPrefillBr;
  if (q_len < a.prefill_min_q || r0 >= q_len) return;
  const int rows = min(kPrefillBr, q_len - r0);
  const int g = head / (a.num_heads / a.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t k_s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t v_s = k_s + 2 * kPrefillBc * D * 2;
  // Q is staged in V's second buffer (Br == Bc): it moves to registers before that buffer is
  // first filled, so the block needs 4 tiles of shared memory, not 5 (3 blocks per SM at D 128).
  static_assert(kPrefillBr == kPrefillBc);
  const uint32_t q_s = v_s + kPrefillBc * D * 2;

  // Visible keys of the tile's rows: [kv_lo, p_hi] (a chunk's positions are increasing).
  const int p_lo = a.positions[q_begin + r0], p_hi = a.positions[q_begin + r0 + rows - 1];
  const int W = a.sliding_window;
  const int kv_lo = W > 0 ? max(0, p_lo - W + 1) : 0;
  const int kv_first_tile = kv_lo / kPrefillBc * kPrefillBc;
  const int num_tiles = (p_hi + 1 - kv_first_tile + kPrefillBc - 1) / kPrefillBc;

  const T* qbase = static_cast<const T*>(a.q) + static_cast<int64_t>(head) * D;
  for (int i = threadIdx.x; i < kPrefillBr * kChunks; i += kPrefillThreads) {
    const int r = i / kChunks, ch = i % kChunks;
    const int t = q_begin + r0 + min(r, rows - 1);  // rows past the end repeat the last one
    cp_async16(q_s + swz<D>(r, ch), qbase + t * a.q_stride + ch * 8, true);
  }
  const C* k_cache = static_cast<const C*>(a.k_cache);
  const C* v_cache = static_cast<const C*>(a.v_cache);
  const int32_t* table = a.block_tables + static_cast<int64_t>(s) * a.max_blocks_per_seq;
  // FP8: tile j's raw chunks (zeros past p_hi), fetched into registers, stored after the math.
  uint2 k_raw[kKvPerThread], v_raw[kKvPerThread];  // unused (and dropped) unless kFp8
  auto fetch_kv = [&](int j) {
    const int base = kv_first_tile + j * kPrefillBc;
#pragma unroll
    for (int u = 0; u < kKvPerThread; ++u) {
      const int i = threadIdx.x + u * kPrefillThreads;
      const int r = i / kChunks, ch = i % kChunks, pos = base + r;
      k_raw[u] = v_raw[u] = make_uint2(0, 0);
      if (pos <= p_hi) {
        const int64_t off = paged_row(table, pos, a.block_size, a.num_kv_heads, g, D) + ch * 8;
        k_raw[u] = __ldg(reinterpret_cast<const uint2*>(k_cache + off));
        v_raw[u] = __ldg(reinterpret_cast<const uint2*>(v_cache + off));
      }
    }
  };
  auto store_kv = [&](int buf) {
#pragma unroll
    for (int u = 0; u < kKvPerThread; ++u) {
      const int i = threadIdx.x + u * kPrefillThreads;
      const uint32_t dst = swz<D>(i / kChunks, i % kChunks) + buf * kPrefillBc * D * 2;
      *reinterpret_cast<uint4*>(smem + dst) = fp8x8_to_half<T>(k_raw[u]);
      *reinterpret_cast<uint4*>(smem + 2 * kPrefillBc * D * 2 + dst) = fp8x8_to_half<T>(v_raw[u]);
    }
  };
  auto load_kv = [&](int j, int buf) {
    const int base = kv_first_tile + j * kPrefillBc;
    for (int i = threadIdx.x; i < kPrefillBc * kChunks; i += kPrefillThreads) {
      const int r = i / kChunks, ch = i % kChunks, pos = base + r;
      const bool valid = pos <= p_hi;
      const int64_t off =
          valid ? paged_row(table, pos, a.block_size, a.num_kv_heads, g, D) + ch * 8 : 0;
      const uint32_t dst = swz<D>(r, ch) + buf * kPrefillBc * D * 2;
      cp_async16(k_s + dst, k_cache + off, valid);
      cp_async16(v_s + dst, v_cache + off, valid);
    }
  };
  if constexpr (kFp8) {
    fetch_kv(0);
    store_kv(0);
  } else {
    load_kv(0, 0);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  uint32_t qf[kKSteps][4];
#pragma unroll
  for (int k = 0; k < kKSteps; ++k) {
    const int r = warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2);
    ldsm_x4(q_s + swz<D>(r, 2 * k + lane / 16), qf[k][0], qf[k][1], qf[k][2], qf[k][3]);
  }
  __syncthreads();  // Q's buffer is V's second tile buffer from here on

  // This thread's two rows of the warp's 16: lane / 4 and lane / 4 + 8.
  const int row_a = warp * 16 + lane / 4;
  int pos_row[2];
  pos_row[0] = a.positions[q_begin + r0 + min(row_a, rows - 1)];
  pos_row[1] = a.positions[q_begin + r0 + min(row_a + 8, rows - 1)];
  const float scale = a.scale * kLog2e;

  float o[kDTiles][4];
#pragma unroll
  for (int i = 0; i < kDTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int j = 0; j < num_tiles; ++j) {
    const int buf = j & 1;
    if constexpr (kFp8) {
      if (j + 1 < num_tiles) fetch_kv(j + 1);  // stored into buf ^ 1 after this tile's math
    } else {
      if (j + 1 < num_tiles) load_kv(j + 1, buf ^ 1);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint32_t kb = k_s + buf * kPrefillBc * D * 2, vb = v_s + buf * kPrefillBc * D * 2;
    // S [16, Bc] of this warp = Q K^T.
    float sc[kNTiles][4];
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
    for (int k = 0; k < kKSteps; ++k) {
#pragma unroll
      for (int n = 0; n < kNTiles; n += 2) {
        uint32_t b[4];
        const int key = n * 8 + (lane % 8) + 8 * (lane / 16);
        ldsm_x4(kb + swz<D>(key, 2 * k + (lane / 8) % 2), b[0], b[1], b[2], b[3]);
        mma16816<T>(sc[n], qf[k], b);
        mma16816<T>(sc[n + 1], qf[k], b + 2);
      }
    }
    const int base = kv_first_tile + j * kPrefillBc;
    const bool need_mask = base + kPrefillBc - 1 > p_lo || (W > 0 && base <= p_hi - W);
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float v = sc[n][e] * scale;
        if (need_mask) {
          const int key = base + n * 8 + 2 * (lane % 4) + (e & 1), pr = pos_row[e >> 1];
          if (key > pr || (W > 0 && key <= pr - W)) v = -INFINITY;
        }
        sc[n][e] = v;
      }
    }
    // Online softmax per row (the 4 lanes of a quad share a row).
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = m[r];
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) mx = fmaxf(mx, fmaxf(sc[n][2 * r], sc[n][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_use = mx == -INFINITY ? 0.0f : mx;
      const float corr = exp2f(m[r] - m_use);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        sc[n][2 * r] = exp2f(sc[n][2 * r] - m_use);
        sc[n][2 * r + 1] = exp2f(sc[n][2 * r + 1] - m_use);
        sum += sc[n][2 * r] + sc[n][2 * r + 1];
      }
      l[r] = l[r] * corr + sum;  // per-lane partial sum; the quad is summed at the end
      m[r] = mx;
#pragma unroll
      for (int d = 0; d < kDTiles; ++d) {
        o[d][2 * r] *= corr;
        o[d][2 * r + 1] *= corr;
      }
    }
    // O [16, D] += P [16, Bc] V [Bc, D]; P's accumulator layout is the A fragment layout.
#pragma unroll
    for (int k = 0; k < kPrefillBc / 16; ++k) {
      uint32_t pa[4];
      pa[0] = pack2<T>(sc[2 * k][0], sc[2 * k][1]);
      pa[1] = pack2<T>(sc[2 * k][2], sc[2 * k][3]);
      pa[2] = pack2<T>(sc[2 * k + 1][0], sc[2 * k + 1][1]);
      pa[3] = pack2<T>(sc[2 * k + 1][2], sc[2 * k + 1][3]);
#pragma unroll
      for (int d = 0; d < kDTiles; d += 2) {
        uint32_t b[4];
        const int key = 16 * k + (lane % 8) + 8 * ((lane / 8) % 2);
        ldsm_x4_t(vb + swz<D>(key, d + lane / 16), b[0], b[1], b[2], b[3]);
        mma16816<T>(o[d], pa, b);
        mma16816<T>(o[d + 1], pa, b + 2);
      }
    }
    // Buffer buf ^ 1 was last read in iteration j - 1 (a barrier ago).
    if constexpr (kFp8) {
      if (j + 1 < num_tiles) store_kv(buf ^ 1);
    }
    __syncthreads();  // buffer buf is refilled by the next iteration's load
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = l[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int row = row_a + 8 * r;
    if (row >= rows) continue;
    const float inv = a.v_scale / sum;
    T* out = static_cast<T*>(a.out) +
             (static_cast<int64_t>(q_begin + r0 + row) * a.num_heads + head) * D;
#pragma unroll
    for (int d = 0; d < kDTiles; ++d) {
      *reinterpret_cast<uint32_t*>(out + d * 8 + 2 * (lane % 4)) =
          pack2<T>(o[d][2 * r] * inv, o[d][2 * r + 1] * inv);
    }
  }
}

template <typename T, typename C, int D>
cudaError_t launch_attention_prefill(const AttentionArgs& a, cudaStream_t stream) {
  const int q_tiles = (a.max_q_len + kPrefillBr - 1) / kPrefillBr;
  if (q_tiles == 0 || a.num_seqs == 0) return cudaSuccess;
  const size_t smem = size_t(4 * kPrefillBc) * D * sizeof(T);
  auto* kernel = attention_prefill_kernel<T, C, D>;
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(q_tiles, a.num_seqs, a.num_heads);
  kernel<<<grid, kPrefillThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace mixserve::cuda
