// Host launchers of the CUDA backend's kernels, callable from plain C++ (the backend, the tests).
// Each launcher enqueues its work on `stream` and returns the launch status; the kernels and
// their templates live in the .cuh file named beside each group.
//
// Shapes: T = tokens of the step, H = hidden, Hq / Hkv = query / KV heads, D = head dim,
//   E = experts, K = experts per token (top-k), F = expert FFN size, N = KV slots
//   (num_blocks * block_size), S = sequences, B = max blocks per sequence, R = rows.
// `dt` is the element type of the half-precision buffers (DType::kBF16 or kF16); every
// buffer typed float is float32. All pointers are device pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "model/dtype.h"

namespace mixserve {
struct BatchPlan;
}

namespace mixserve::cuda {

// ---- synthetic_weights.cuh ----
// out[i] = the value make_model's synthetic_tensor_values gives element i of a tensor drawn
// with (key, half_width, norm) (see SyntheticTensorParams), rounded to dt.  out: [n]
cudaError_t fill_synthetic(void* out, DType dt, int64_t n, uint64_t key, double half_width,
                           bool norm, cudaStream_t stream);

// ---- embedding.cuh ----
// x[t, :] = float(embed[ids[t], :]).  ids: [T], embed: [V, H] dt, x: [T, H] float
cudaError_t embedding_gather(const int32_t* ids, int T, const void* embed, DType dt, int H,
                             float* x, cudaStream_t stream);

// ---- rms_norm.cuh ----
// Fused residual add + MixtralRMSNorm, float32 math. For each output row r, with source row
// i = rows ? rows[r] : r:   x_i += delta_i (when delta is given; x is written back only when
// rows is null), out[r] = w * (x_i * rsqrt(mean(x_i^2) + eps)).
//   x, delta: [T, H] float; rows: [R] or null (then R = T); w: [H] dt; out: [R, H] dt
cudaError_t add_rms_norm(float* x, const float* delta, const int32_t* rows, int R, int H,
                         const void* w, float eps, void* out, DType dt, cudaStream_t stream);

// ---- rope_kv.cuh ----
// Rotary embedding (rotate_half; angle = float(position) * inv_freq[i], as the CPU backend)
// of the q and k parts of qkv, q in place; the rotated k and the v part are stored at each
// token's slot of the layer's paged cache.
//   qkv: [T, (Hq + 2 Hkv) * D] dt (q | k | v per token); positions: [T]; slots: [T];
//   inv_freq: [D/2] float; k_cache, v_cache: pools of N slots (kv_layout.h: head-major tiles of
//   16 slots, kv_pool_slots(N) rows per head) of dt, or E4M3 with kv_fp8
// kv_fp8: the caches hold E4M3 values k / k_scale and v / v_scale (per-tensor scales).
// row_scale [T] / col_scale [(Hq + 2 Hkv) * D] (both or neither; col_scale 16-byte aligned for
// the vector kernel): qkv holds an unscaled FP8 GEMM's sums, qkv[t, j] standing for
// qkv[t, j] * row_scale[t] * col_scale[j]; the scaled values are rotated and stored (q too).
struct KvFp8Scales {
  float k_scale = 1.0f;
  float v_scale = 1.0f;
};
cudaError_t rope_write_kv(void* qkv, DType dt, int T, int Hq, int Hkv, int D,
                          const int32_t* positions, const int64_t* slots, const float* inv_freq,
                          void* k_cache, void* v_cache, cudaStream_t stream,
                          const KvFp8Scales* kv_fp8 = nullptr, const float* row_scale = nullptr,
                          const float* col_scale = nullptr);

// ---- attention.cuh ----
struct AttentionArgs {
  const void* q = nullptr;                // query head h of token t at q + t * q_stride + h * D
  int64_t q_stride = 0;                   // elements between tokens' queries
  const void* k_cache = nullptr;          // pool of N slots, Hkv heads (kv_layout.h)
  const void* v_cache = nullptr;          // the same
  void* out = nullptr;                    // [T, Hq, D]
  const int32_t* positions = nullptr;     // [T]
  const int32_t* seq_of_token = nullptr;  // [T]
  const int32_t* block_tables = nullptr;  // [S, B]
  int max_blocks_per_seq = 0;             // B
  int num_tokens = 0;                     // T
  int num_heads = 0;                      // Hq
  int num_kv_heads = 0;                   // Hkv
  int head_dim = 0;                       // D <= 256
  int block_size = 0;
  int sliding_window = 0;  // > 0: position p sees positions > p - window
  float scale = 1.0f;      // D^-0.5 (times the K scale of an FP8 cache)
  bool kv_fp8 = false;     // the caches hold E4M3 values (else the dtype)
  float v_scale = 1.0f;    // FP8 cache: V's dequantization multiplier
  // The fast kernels (D = 64 / 128; attention_plan.cpp fills the host fields from the plan).
  const int32_t* seq_offsets = nullptr;  // [S+1] device; nullptr: no tensor-core prefill
  int num_seqs = 0;                      // S
  int prefill_min_q = 16;  // sequences with at least this many queries take the prefill kernel
  int max_q_len = 0;       // host: most queries of one sequence in the step
  int max_context = 0;     // host: largest positions[t] + 1 (0: unknown, no split-K)
  int num_decode_tokens = -1;   // host: tokens left to the split-K kernel (-1: all T)
  void* workspace = nullptr;    // split-K partials; too small or null: fewer splits
  size_t workspace_bytes = 0;
};
// Causal paged attention for prefill, chunked prefill and decode alike: token t attends to
// positions [first, positions[t]] of its sequence (read through its block table), online
// softmax in float32. Needs Hq % Hkv == 0, Hq / Hkv <= 32, D <= 256. D = 64 / 128: sequences
// with >= prefill_min_q queries on tensor cores (needs seq_offsets and the host fields), the
// other tokens split-K over their context (split planned here from the host fields and the
// SM count); other D: the generic kernel.
cudaError_t paged_attention(const AttentionArgs& args, DType dt, cudaStream_t stream);
// The generic kernel above alone (one block per (token, KV head), any D <= 256): the fallback
// of paged_attention and the baseline of tests and benchmarks.
cudaError_t paged_attention_generic(const AttentionArgs& args, DType dt, cudaStream_t stream);

// Split of each (token, KV head)'s context over blocks, decided on the host: split s of a
// token covers its visible positions [first + s * split_len, first + (s+1) * split_len).
struct DecodeSplitPlan {
  int num_splits = 1;
  int split_len = 0;  // keys per split, a multiple of 64 (of 16 for the tiled kernel)
  // attention_decode_tiled.cuh: one warp per (token, KV head, head group, split) with K / V
  // tiles through shared memory (short contexts); else the split-K stream kernel.
  bool tiled = false;
};
// From the number of decode tokens, heads, the longest visible context, the SM count and the
// workspace size. Partials take workspace_needed(...) bytes.
DecodeSplitPlan plan_decode_splits(const AttentionArgs& args, int num_sms);
size_t attention_workspace_needed(const AttentionArgs& args, int num_splits);
// paged_attention with a given split plan (benchmarks sweep it; a plan may be reused by steps
// of the same shape).
cudaError_t paged_attention_planned(const AttentionArgs& args, const DecodeSplitPlan& plan,
                                    DType dt, cudaStream_t stream);
// Fills the host fields (num_seqs, max_q_len, max_context, num_decode_tokens) from the plan.
void set_attention_plan_fields(AttentionArgs& args, const BatchPlan& plan);
// Workspace that lets plan_decode_splits choose freely for up to max_tokens decode tokens.
constexpr size_t kAttentionWorkspaceBytes = size_t(32) << 20;

// ---- moe_routing.cuh ----
// Softmax over the E router logits, top-K (ties go to the lower expert index), the K
// probabilities divided by their sum.  logits: [T, E] float; experts: [T, K]; weights: [T, K]
// float. E <= 64.
cudaError_t moe_topk(const float* logits, int T, int E, int K, int32_t* experts, float* weights,
                     cudaStream_t stream);
// Counting sort of the T*K (token, slot) pairs by expert, stable (ascending pair index).
//   experts: [T*K]; counts: [E]; offsets: [E+1]; sorted_token: [T*K] token of each sorted
//   row; pair_pos: [T*K] sorted row of each pair. One launch; E <= 64 and every experts[i] in
//   [0, E).
//   kernel: kTiled = one block a 1,024 pairs (session 12: 166.9 -> 16.9 us at 32,768 pairs on
//   an H100), kBlock = one block for all pairs (sessions 1-11), kDefault = MIXSERVE_MOE_SORT
//   (tiled unless set to block).
enum class MoeSortKernel { kDefault, kTiled, kBlock };
cudaError_t moe_sort(const int32_t* experts, int T, int K, int E, int32_t* counts, int32_t* offsets,
                     int32_t* sorted_token, int32_t* pair_pos, cudaStream_t stream,
                     MoeSortKernel kernel = MoeSortKernel::kDefault);
// Unless MIXSERVE_MOE_SORT=block: the tiled sort and the many-block MoE group kernel
// (moe_group_experts_fp8) by default.
bool moe_routing_tiled();

// ---- moe_ffn.cuh ----
// dst[r, :] = src[index[r], :].  src: [*, H] dt, index: [n], dst: [n, H] dt
cudaError_t gather_rows(const void* src, const int32_t* index, int n, int H, void* dst, DType dt,
                        cudaStream_t stream);
// out[r, f] = silu(gate_up[r, f]) * gate_up[r, F + f], float32 math.
//   gate_up: [n, 2F] dt (w1 output | w3 output); out: [n, F] dt
cudaError_t silu_mul(const void* gate_up, int n, int F, void* out, DType dt, cudaStream_t stream);
// out[t, :] = sum over t's K slots in ascending expert order of weights[t,k] * y[pair_pos[t,k]]
// (the order of the CPU reference; no atomics).  y: [T*K, H] float; experts, weights,
// pair_pos: [T, K]; out: [T, H] float. K <= 16.
cudaError_t moe_combine(const float* y, const int32_t* experts, const float* weights,
                        const int32_t* pair_pos, int T, int K, int H, float* out,
                        cudaStream_t stream);

}  // namespace mixserve::cuda
