// CudaBackend::forward: one step of the model on the device.
//
// Shapes: T = tokens of the step, R = logits rows, H = hidden, Hq / Hkv = heads, D = head dim,
// E = experts, K = top-k, F = FFN size, V = vocab. x (the residual stream) and every GEMM
// output that is added to it are float32; the GEMM inputs are the weight dtype.
#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/moe_padded.h"
#include "util/error.h"

namespace mixserve::cuda {

void CudaBackend::forward(const BatchPlan& plan, std::span<float> logits_out) {
  const int V = config_.vocab_size;
  const int R = static_cast<int>(plan.logits_rows.size());
  MIXSERVE_CHECK(!computes_logits() || logits_out.size() >= size_t(R) * V,
                 "CUDA backend: logits buffer holds ", logits_out.size(),
                 " floats, the plan needs ", size_t(R) * V);
  run_model(plan);
  if (computes_logits() && plan.num_tokens() > 0 && R > 0) {
    MIXSERVE_CUDA_CHECK(cudaMemcpyAsync(logits_out.data(), ws_.logits, size_t(R) * V * 4,
                                        cudaMemcpyDeviceToHost, stream_));
  }
  MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::run_model(const BatchPlan& plan) {
  // The calling thread may not be the one that made this backend (the engine's loop, a
  // rank's worker thread): kernels go to this backend's device.
  MIXSERVE_CUDA_CHECK(cudaSetDevice(options_.device));
  const int V = config_.vocab_size;
  MIXSERVE_CHECK(kv_cache_.get() != nullptr, "CUDA backend: forward() before allocate_kv_cache()");
  plan.validate(kv_spec_.block_size, kv_spec_.num_blocks);
  for (int id : plan.token_ids) {
    MIXSERVE_CHECK(id >= 0 && id < V, "CUDA backend: token id ", id, " outside the vocabulary [0, ",
                   V, ")");
  }
  const int T = plan.num_tokens();
  if (T == 0) return;
  if (const int bucket = decode_bucket(plan); bucket > 0) return run_decode(plan, bucket);
  ensure_workspace(T, static_cast<int>(plan.logits_rows.size()));
  upload_plan(plan);
  attn_step_ = AttentionArgs{};
  attn_step_.seq_offsets = plan_.seq_offsets;  // long query runs take the tensor-core kernel
  set_attention_plan_fields(attn_step_, plan);
  comm_timer_.begin_step(stream_);
  sync_timer_.begin_step(stream_);
  enqueue_forward(T, static_cast<int>(plan.logits_rows.size()), plan.max_blocks_per_seq);
  comm_timer_.end_step(stream_);
  sync_timer_.end_step(stream_);
}

// Enqueues only (no sync, no allocation, no host read-back for T * K <= kPaddedMoeMaxRows), so
// that decode steps can be captured into a CUDA graph.
void CudaBackend::enqueue_forward(int T, int R, int max_blocks_per_seq) {
  const ModelConfig& c = config_;
  const int H = c.hidden_size, V = c.vocab_size;
  const int Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const int qkv_width = (Hq + 2 * Hkv) * D;
  const DType dt = options_.dtype;

  deferred_combine_layer_ = -1;  // a step that threw may have left one
  MIXSERVE_CUDA_CHECK(
      embedding_gather(plan_.token_ids, T, weights_.embed(), dt, H, ws_.x, stream_));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    norm_and_qkv(l, T);  // attention norm (after the previous FFN's residual add), qkv GEMM
    const KvFp8Scales kv_scales{k_scales_[l], v_scales_[l]};
    // Unscaled FP8 qkv sums (fp8_unscaled_attention) get their scales here.
    const bool raw_qkv = fp8_unscaled_attention(T);
    MIXSERVE_CUDA_CHECK(rope_write_kv(ws_.qkv, dt, T, Hq, Hkv, D, plan_.positions, plan_.slots,
                                      inv_freq_.as<float>(), kv_pool(l, 0), kv_pool(l, 1), stream_,
                                      options_.kv_fp8 ? &kv_scales : nullptr,
                                      raw_qkv ? ws_.h_scale : nullptr,
                                      raw_qkv ? weights_.layer(l).wqkv_scale : nullptr));
    AttentionArgs a = attn_step_;
    a.q = ws_.qkv;
    a.q_stride = qkv_width;
    a.k_cache = kv_pool(l, 0);
    a.v_cache = kv_pool(l, 1);
    a.out = ws_.attn;
    a.positions = plan_.positions;
    a.seq_of_token = plan_.seq_of_token;
    a.block_tables = plan_.block_tables;
    a.max_blocks_per_seq = max_blocks_per_seq;
    a.num_tokens = T;
    a.num_heads = Hq;
    a.num_kv_heads = Hkv;
    a.head_dim = D;
    a.block_size = kv_spec_.block_size;
    a.sliding_window = c.sliding_window;
    a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
    a.workspace = attn_workspace_.get();
    a.workspace_bytes = attn_workspace_.bytes();
    if (options_.kv_fp8) {
      a.kv_fp8 = true;
      a.scale *= kv_scales.k_scale;
      a.v_scale = kv_scales.v_scale;
    }
    MIXSERVE_CUDA_CHECK(paged_attention(a, dt, stream_));
    o_proj_and_norm(l, T);
    feed_forward(l, T);  // -> ws_.delta
    all_reduce_delta(T);
  }
  MIXSERVE_CHECK(deferred_combine_layer_ < 0, "CUDA backend: the last MoE combine is pending");
  if (R == 0 || !computes_logits()) return;
  // Only the wanted rows get the last residual add, the final norm and the lm_head.
  MIXSERVE_CUDA_CHECK(add_rms_norm(ws_.x, ws_.delta, plan_.logits_rows, R, H, weights_.final_norm(),
                                   c.rms_norm_eps, ws_.final_rows, dt, stream_));
  gemm_->matmul(ws_.final_rows, weights_.lm_head(), ws_.logits, R, V, H, dt, DType::kF32, stream_);
}

void CudaBackend::feed_forward(int l, int T) {
  if (options_.fp8) return feed_forward_fp8(l, T);
  const ModelConfig& c = config_;
  const CudaLayerWeights w = weights_.layer(l);
  const int H = c.hidden_size, F = c.intermediate_size;
  const DType dt = options_.dtype;
  const size_t el = dtype_size(dt);
  if (!c.moe) {  // dense: the single expert over every token, straight into delta
    gemm_->matmul(ws_.h, w.w13, ws_.gate_up, T, 2 * F, H, dt, dt, stream_);
    MIXSERVE_CUDA_CHECK(silu_mul(ws_.gate_up, T, F, ws_.act, dt, stream_));
    gemm_->matmul(ws_.act, w.w2, ws_.delta, T, H, F, dt, DType::kF32, stream_);
    return;
  }
  const int K = c.num_experts_per_tok;
  const size_t grouped_rows = size_t(std::min(local_experts(), T * K)) * T;
  if (T * K <= options_.moe_padded_max_rows && grouped_rows <= size_t(ws_tokens_) * K) {
    return moe_padded(l, T);
  }
  const int El = local_experts();  // E unless EP
  const int32_t* counts = route_sort_and_read_counts(l, T, [&](int) {
    return gather_rows(ws_.h, ws_.sorted_token, T * K, H, ws_.gathered, dt, stream_);
  });
  const char* gathered = static_cast<const char*>(ws_.gathered);
  char* gate_up = static_cast<char*>(ws_.gate_up);
  char* act = static_cast<char*>(ws_.act);
  const char* w13 = static_cast<const char*>(w.w13);
  const char* w2 = static_cast<const char*>(w.w2);
  const int lanes = moe_lanes(static_cast<int>(std::count_if(counts, counts + El,
                                                             [](int32_t n) { return n > 0; })));
  fork_lanes(lanes);
  for (int e = 0, row = 0, lane = 0; e < El; row += counts[e], ++e) {
    const int n = counts[e];
    if (n == 0) continue;
    const cudaStream_t s = lane_stream(lane);
    gemm_->matmul(gathered + size_t(row) * H * el, w13 + size_t(e) * 2 * F * H * el,
                  gate_up + size_t(row) * 2 * F * el, n, 2 * F, H, dt, dt, s, lane);
    MIXSERVE_CUDA_CHECK(
        silu_mul(gate_up + size_t(row) * 2 * F * el, n, F, act + size_t(row) * F * el, dt, s));
    gemm_->matmul(act + size_t(row) * F * el, w2 + size_t(e) * H * F * el,
                  ws_.expert_out + size_t(row) * H, n, H, F, dt, DType::kF32, s, lane);
    lane = (lane + 1) % lanes;
  }
  join_lanes(lanes);
  combine_experts(T);
}

}  // namespace mixserve::cuda

namespace mixserve::cuda {

// MoE over G = min(E, T*K) groups of T rows (moe_padded.h): routing-independent shapes, no
// host sync. The unused capacity is zero rows, computed and never read.
void CudaBackend::moe_padded(int l, int T) {
  const ModelConfig& c = config_;
  const CudaLayerWeights w = weights_.layer(l);
  const int H = c.hidden_size, F = c.intermediate_size;
  const int K = c.num_experts_per_tok;
  const int El = local_experts(), G = std::min(El, T * K);
  const DType dt = options_.dtype;
  const int Es = route_tokens(l, T);  // E unless EP
  MIXSERVE_CUDA_CHECK(moe_sort(ws_.experts, T, K, Es, ws_.counts, ws_.offsets, ws_.sorted_token,
                               ws_.pair_pos, stream_));
  int32_t* group_expert = moe_groups_.as<int32_t>();
  int32_t* group_count = group_expert + kMaxExperts;
  int32_t* expert_group = group_count + kMaxExperts;
  const void** ptrs = moe_groups_.as<const void*>(3 * kMaxExperts * sizeof(int32_t));
  MoeGroupArgs g;
  g.counts = ws_.counts;
  g.E = El;
  g.G = G;
  g.C = T;
  g.group_expert = group_expert;
  g.group_count = group_count;
  g.expert_group = expert_group;
  g.ptrs = ptrs;
  g.gathered = ws_.gathered;
  g.w13 = w.w13;
  g.gate_up = ws_.gate_up;
  g.act = ws_.act;
  g.w2 = w.w2;
  g.expert_out = ws_.expert_out;
  g.H = H;
  g.F = F;
  g.elem = dtype_size(dt);
  MIXSERVE_CUDA_CHECK(moe_group_experts(g, stream_));
  MIXSERVE_CUDA_CHECK(gather_rows_grouped(ws_.h, group_expert, group_count, ws_.offsets,
                                          ws_.sorted_token, G, T, H, ws_.gathered, dt, stream_));
  MIXSERVE_CUDA_CHECK(group_pair_positions(ws_.experts, ws_.offsets, expert_group, T * K, T,
                                           ws_.pair_pos, stream_));
  // Per group: [T, H] x [2F, H]^T -> [T, 2F]; SiLU * up; [T, F] x [H, F]^T -> [T, H] float.
  batched_->matmul(ptrs, ptrs + G, const_cast<void* const*>(ptrs + 2 * G), T, 2 * F, H, G, dt, dt,
                   stream_);
  MIXSERVE_CUDA_CHECK(silu_mul(ws_.gate_up, G * T, F, ws_.act, dt, stream_));
  batched_->matmul(ptrs + 3 * G, ptrs + 4 * G, const_cast<void* const*>(ptrs + 5 * G), T, H, F, G,
                   dt, DType::kF32, stream_);
  combine_experts(T);
}

}  // namespace mixserve::cuda

namespace mixserve::cuda {

int CudaBackend::route_tokens(int l, int T) {
  const ModelConfig& c = config_;
  const int E = c.num_local_experts, K = c.num_experts_per_tok;  // the router sees every expert
  gemm_->matmul(ws_.h, weights_.layer(l).router, ws_.router_logits, T, E, c.hidden_size,
                options_.dtype, DType::kF32, stream_);
  MIXSERVE_CUDA_CHECK(
      moe_topk(ws_.router_logits, T, E, K, ws_.experts, ws_.expert_weights, stream_));
  return localize_experts(T);
}

const int32_t* CudaBackend::route_sort_and_read_counts(
    int l, int T, const std::function<cudaError_t(int)>& gather,
    const std::function<void()>& after_copy) {
  const int Es = route_tokens(l, T);
  MIXSERVE_CUDA_CHECK(moe_sort(ws_.experts, T, config_.num_experts_per_tok, Es, ws_.counts,
                               ws_.offsets, ws_.sorted_token, ws_.pair_pos, stream_));
  MIXSERVE_CUDA_CHECK(gather(Es));
  // The expert GEMMs need each expert's row count on the host: one sync per MoE layer.
  // (With after_copy work the timed interval ends behind it.)
  sync_timer_.before(stream_);
  MIXSERVE_CUDA_CHECK(cudaMemcpyAsync(counts_host_.get(), ws_.counts,
                                      sizeof(int32_t) * local_experts(), cudaMemcpyDeviceToHost,
                                      stream_));
  if (after_copy) {
    MIXSERVE_CUDA_CHECK(cudaEventRecord(counts_copied_, stream_));
    after_copy();
    MIXSERVE_CUDA_CHECK(cudaEventSynchronize(counts_copied_));
  } else {
    MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  sync_timer_.after(stream_);
  return counts_host_.as<int32_t>();
}

}  // namespace mixserve::cuda
