// The GEMM steps of CudaBackend::forward whose inputs are FP8 under --quantization fp8, with
// their half-precision counterparts: the attention's norm + qkv projection, the output
// projection + FFN norm, and the FP8 feed-forward (dense or MoE).
//
// Shapes: T = tokens of the step, H = hidden, Hq / Hkv = heads, D = head dim, E = experts,
// K = top-k, F = FFN size. Each FP8 GEMM input is produced with its per-token scales by the
// kernel that computes it (norm, SiLU·mul, gather); only the attention output is quantized by
// a separate pass (quantize_rows_fp8) before the output projection.
#include <algorithm>
#include <functional>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/moe_padded_fp8.h"
#include "util/error.h"

namespace mixserve::cuda {

void CudaBackend::norm_and_qkv(int l, int T) {
  const ModelConfig& c = config_;
  const CudaLayerWeights w = weights_.layer(l);
  const int H = c.hidden_size,
            width = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
  const DType dt = options_.dtype;
  // Layer 0 starts from the embedding; later layers first add the previous FFN output.
  const float* delta = l == 0 ? nullptr : ws_.delta;
  if (!options_.fp8) {
    MIXSERVE_CUDA_CHECK(
        add_rms_norm(ws_.x, delta, nullptr, T, H, w.attn_norm, c.rms_norm_eps, ws_.h, dt, stream_));
    gemm_->matmul(ws_.h, w.wqkv, ws_.qkv, T, width, H, dt, dt, stream_);
    return;
  }
  if (deferred_combine_layer_ >= 0) {  // the previous MoE's combine is this norm's delta
    MIXSERVE_CHECK(deferred_combine_layer_ == l - 1, "CUDA backend: the MoE combine of layer ",
                   deferred_combine_layer_, " is still pending at layer ", l);
    const MoeCombineFp8 m = grouped_fp8_step(l - 1, T).combine();
    deferred_combine_layer_ = -1;
    MIXSERVE_CUDA_CHECK(add_rms_norm_fp8_moe(ws_.x, m, T, H, w.attn_norm, c.rms_norm_eps,
                                             nullptr, ws_.h_q, ws_.h_scale, dt, stream_));
  } else {
    MIXSERVE_CUDA_CHECK(add_rms_norm_fp8(ws_.x, delta, T, H, w.attn_norm, c.rms_norm_eps,
                                         nullptr, ws_.h_q, ws_.h_scale, dt, stream_));
  }
  if (fp8_unscaled_attention(T)) {  // raw sums; rope_write_kv applies the scales
    gemm_->matmul_fp8_unscaled(ws_.h_q, static_cast<const uint8_t*>(w.wqkv), ws_.qkv, T, width,
                               H, dt, stream_);
    return;
  }
  gemm_->matmul_fp8(ws_.h_q, ws_.h_scale, static_cast<const uint8_t*>(w.wqkv), w.wqkv_scale,
                    ws_.qkv, T, width, H, dt, stream_);
}

bool CudaBackend::fp8_unscaled_attention(int T) const {
  // One GPU only: a shard's wo sums would need their per-token scales before the all-reduce.
  return options_.fp8 && options_.shard.size <= 1 && options_.fp8_unscaled_attn_min_tokens > 0 &&
         T >= options_.fp8_unscaled_attn_min_tokens;
}

void CudaBackend::o_proj_and_norm(int l, int T) {
  const ModelConfig& c = config_;
  const CudaLayerWeights w = weights_.layer(l);
  const int H = c.hidden_size, HqD = c.num_attention_heads * c.head_dim;
  const DType dt = options_.dtype;
  if (!options_.fp8) {
    gemm_->matmul(ws_.attn, w.wo, ws_.delta, T, H, HqD, dt, DType::kF32, stream_);
    all_reduce_delta(T);
    MIXSERVE_CUDA_CHECK(add_rms_norm(ws_.x, ws_.delta, nullptr, T, H, w.ffn_norm, c.rms_norm_eps,
                                     ws_.h, dt, stream_));
    return;
  }
  MIXSERVE_CUDA_CHECK(quantize_rows_fp8(ws_.attn, dt, T, HqD, ws_.attn_q, ws_.attn_scale, stream_));
  if (fp8_unscaled_attention(T)) {  // raw sums; the norm below applies the scales
    gemm_->matmul_fp8_unscaled(ws_.attn_q, static_cast<const uint8_t*>(w.wo), ws_.delta, T, H,
                               HqD, DType::kF32, stream_);
    MIXSERVE_CUDA_CHECK(add_rms_norm_fp8(ws_.x, ws_.delta, T, H, w.ffn_norm, c.rms_norm_eps,
                                         c.moe ? ws_.h : nullptr, ws_.h_q, ws_.h_scale, dt,
                                         stream_, ws_.attn_scale, w.wo_scale));
    return;
  }
  gemm_->matmul_fp8(ws_.attn_q, ws_.attn_scale, static_cast<const uint8_t*>(w.wo), w.wo_scale,
                    ws_.delta, T, H, HqD, DType::kF32, stream_);
  all_reduce_delta(T);
  // The router (MoE) reads the half-precision h; the expert GEMMs the quantized one.
  MIXSERVE_CUDA_CHECK(add_rms_norm_fp8(ws_.x, ws_.delta, T, H, w.ffn_norm, c.rms_norm_eps,
                                       c.moe ? ws_.h : nullptr, ws_.h_q, ws_.h_scale, dt, stream_));
}

void CudaBackend::feed_forward_fp8(int l, int T) {
  const ModelConfig& c = config_;
  const CudaLayerWeights w = weights_.layer(l);
  const int H = c.hidden_size, F = c.intermediate_size;
  const DType dt = options_.dtype;
  const size_t el = dtype_size(dt);
  const uint8_t* w13 = static_cast<const uint8_t*>(w.w13);
  const uint8_t* w2 = static_cast<const uint8_t*>(w.w2);
  if (!c.moe) {  // dense: the single expert over every token, straight into delta
    gemm_->matmul_fp8(ws_.h_q, ws_.h_scale, w13, w.w13_scale, ws_.gate_up, T, 2 * F, H, dt,
                      stream_);
    MIXSERVE_CUDA_CHECK(
        silu_mul_fp8(ws_.gate_up, T, F, ws_.act_q, ws_.act_scale, nullptr, 0, dt, stream_));
    gemm_->matmul_fp8(ws_.act_q, ws_.act_scale, w2, w.w2_scale, ws_.delta, T, H, F, DType::kF32,
                      stream_);
    return;
  }
  if (moe_padded_fp8(l, T)) return;  // small steps: grouped, no host sync
  const int K = c.num_experts_per_tok, El = local_experts();  // E unless EP
  int Es = El;  // moe_sort's buckets: E, or E + 1 under expert parallelism
  // The pre-sync group (moe_presync_group): groups and gathered rows formed on the device
  // while the host waits for the counts and plans the GEMMs.
  const bool presync = options_.moe_presync_group && batched_fp8_ != nullptr &&
                       options_.moe_counted_max_padding > 0.0;
  std::function<void()> after_copy;
  if (presync) {
    after_copy = [&] {
      MoeGroupedFp8Step s = grouped_fp8_step(l, T);
      s.sort_buckets = Es;
      moe_presync_group_fp8(s, kCountedRowAlign, int(ws_moe_rows_), moe_layout(), stream_);
    };
  }
  const int32_t* counts = route_sort_and_read_counts(
      l, T,
      [&](int buckets) {
        Es = buckets;
        return cudaSuccess;
      },
      after_copy);
  // Balanced routing: the grouped GEMMs over G groups of the largest count (scales folded into
  // SiLU·mul and the combine); otherwise one GEMM pair per expert on the lanes below.
  if (moe_counted_fp8(l, T, counts, presync)) return;
  if (presync) {  // the lanes combine from the sorted rows: undo the pre-sync group's mapping
    const int32_t* expert_group = moe_groups_.as<int32_t>() + 2 * kMaxExperts;
    MIXSERVE_CUDA_CHECK(moe_ungroup_pairs_fp8(ws_.experts, ws_.offsets, expert_group,
                                              moe_layout(), El, T * K, ws_.pair_pos, stream_));
  }
  ++lanes_moe_layers_;
  MIXSERVE_CUDA_CHECK(gather_rows_fp8(ws_.h_q, ws_.h_scale, ws_.sorted_token, T * K, H,
                                      ws_.offsets, Es, ws_.gathered_q, ws_.gathered_scale,
                                      stream_));
  char* gate_up = static_cast<char*>(ws_.gate_up);
  const int lanes = moe_lanes(static_cast<int>(std::count_if(counts, counts + El,
                                                             [](int32_t n) { return n > 0; })));
  // BF16 activations: unscaled FP8 GEMMs (raw sums fit bf16's range; not fp16's), scaled after.
  const bool unscaled = moe_fp8_unscaled_ && dt == DType::kBF16 && F % 8 == 0 && H % 4 == 0;
  fork_lanes(lanes);
  // row: the expert's first sorted row; srow: its first scale (runs padded to 4 floats).
  for (int e = 0, row = 0, srow = 0, lane = 0; e < El;
       row += counts[e], srow += (counts[e] + 3) / 4 * 4, ++e) {
    const int n = counts[e];
    if (n == 0) continue;
    const cudaStream_t s = lane_stream(lane);
    const float* x_scale = ws_.gathered_scale + srow;
    const float* w13_scale = w.w13_scale + size_t(e) * 2 * F;
    const float* w2_scale = w.w2_scale + size_t(e) * H;
    void* gu = gate_up + size_t(row) * 2 * F * el;
    float* out = ws_.expert_out + size_t(row) * H;
    // Measured on an H100 (docs/perf/NOTES.md): unscaled wins at decode sizes (M <= ~500 rows
    // an expert), loses ~3% at prefill sizes (~2,000 rows) to the extra scale pass.
    if (unscaled && n < 1024) {  // scales applied by SiLU·mul and scale_rows_cols
      gemm_->matmul_fp8_unscaled(ws_.gathered_q + size_t(row) * H, w13 + size_t(e) * 2 * F * H, gu,
                                 n, 2 * F, H, dt, s, lane);
      MIXSERVE_CUDA_CHECK(silu_mul_fp8(gu, n, F, ws_.act_q + size_t(row) * F, ws_.act_scale + srow,
                                       nullptr, 0, dt, s, x_scale, w13_scale));
      gemm_->matmul_fp8_unscaled(ws_.act_q + size_t(row) * F, w2 + size_t(e) * H * F, out, n, H, F,
                                 DType::kF32, s, lane);
      MIXSERVE_CUDA_CHECK(scale_rows_cols(out, n, H, ws_.act_scale + srow, w2_scale, s));
    } else {
      gemm_->matmul_fp8(ws_.gathered_q + size_t(row) * H, x_scale, w13 + size_t(e) * 2 * F * H,
                        w13_scale, gu, n, 2 * F, H, dt, s, lane);
      MIXSERVE_CUDA_CHECK(silu_mul_fp8(gu, n, F, ws_.act_q + size_t(row) * F, ws_.act_scale + srow,
                                       nullptr, 0, dt, s));
      gemm_->matmul_fp8(ws_.act_q + size_t(row) * F, ws_.act_scale + srow,
                        w2 + size_t(e) * H * F, w2_scale, out, n, H, F, DType::kF32, s, lane);
    }
    lane = (lane + 1) % lanes;
  }
  join_lanes(lanes);
  combine_experts(T);
}

}  // namespace mixserve::cuda
