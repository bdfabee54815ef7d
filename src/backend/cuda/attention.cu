// The one dtype / head-dim dispatch point of paged attention: the tensor-core prefill kernel
// (attention_prefill.cuh) for sequences with many queries, the tiled decode kernel
// (attention_decode_tiled.cuh; the split-K stream kernel of attention_decode.cuh with
// MIXSERVE_DECODE_TILED=0) for the other tokens, all for D = 64 / 128; the generic kernel
// (attention.cuh) for every other head dim. Prefill at D = 128 with a BF16 / FP16 cache and
// chunks of more than 64 queries takes the wgmma kernel (attention_prefill_wgmma.cuh) unless
// MIXSERVE_PREFILL_ATTN=mma selects the mma.sync kernel (A/B benchmarks, tests of both).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_decode.cuh"
#include "backend/cuda/attention_decode_tiled.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/attention_prefill_wgmma.cuh"

namespace mixserve::cuda {
namespace {

bool fast_head_dim(int D) { return D == 64 || D == 128; }

// Read per call (cheap next to a launch) so that one process can time or test both kernels.
bool prefill_wgmma_enabled() {
  const char* v = std::getenv("MIXSERVE_PREFILL_ATTN");
  return v == nullptr || std::strcmp(v, "mma") != 0;
}

// T: the query/output type; C: the cache element type (T, or E4M3 for an FP8 cache).
template <typename T, typename C, int D>
cudaError_t launch_fast_typed(const AttentionArgs& a, const DecodeSplitPlan& plan,
                              cudaStream_t stream) {
  const bool prefill = a.seq_offsets != nullptr && a.max_q_len >= a.prefill_min_q;
  if (!prefill) {
    AttentionArgs all = a;  // the split-K kernel skips no token
    all.seq_offsets = nullptr;
    return launch_attention_decode_planned<T, C, D>(all, plan, stream);
  }
  cudaError_t err;
  if constexpr (D == 128 && std::is_same_v<T, C>) {
    err = a.max_q_len > 64 && prefill_wgmma_enabled()
              ? launch_attention_prefill_wgmma<T>(a, stream)
              : launch_attention_prefill<T, C, D>(a, stream);
  } else {
    err = launch_attention_prefill<T, C, D>(a, stream);
  }
  if (err != cudaSuccess) return err;
  // num_decode_tokens == 0: the prefill kernel took every token.
  if (a.num_decode_tokens == 0) return cudaSuccess;
  return launch_attention_decode_planned<T, C, D>(a, plan, stream);
}

template <int D>
cudaError_t launch_fast(const AttentionArgs& a, const DecodeSplitPlan& plan, DType dt,
                        cudaStream_t stream) {
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    if (a.kv_fp8) return launch_fast_typed<T, __nv_fp8_e4m3, D>(a, plan, stream);
    return launch_fast_typed<T, T, D>(a, plan, stream);
  });
}

}  // namespace

cudaError_t paged_attention_generic(const AttentionArgs& args, DType dt, cudaStream_t stream) {
  return dispatch_half_type(dt, [&](auto tag) {
    using T = decltype(tag);
    if (args.kv_fp8) return launch_paged_attention<T, __nv_fp8_e4m3>(args, stream);
    return launch_paged_attention<T, T>(args, stream);
  });
}

size_t attention_workspace_needed(const AttentionArgs& a, int num_splits) {
  if (num_splits <= 1) return 0;
  return size_t(a.num_tokens) * a.num_heads * num_splits * (a.head_dim + 1) * sizeof(float);
}

namespace {

// The tiled kernel: one warp per (token, KV head, head group, split). Split only when there are
// too few warps to keep the memory busy (~4 a SM, measured on an H100: 64 x 4,096 keys ran best
// with 2 splits, 1 x 4,096 with 64), and not short contexts that already give every SM a warp
// (64 x 193 keys: 23 us unsplit, 27 us with 2 splits: the partials and the combine launch cost
// more than the extra warps save). A split is at least one 16-key tile.
DecodeSplitPlan plan_tiled_splits(const AttentionArgs& a, int len, int num_sms) {
  constexpr int kWarpsPerSm = 4;
  constexpr int kShortLen = 512;
  DecodeSplitPlan plan{1, 1 << 30, true};
  if (len <= kTiledKeys || a.workspace == nullptr) return plan;
  const int tokens = a.num_decode_tokens >= 0 ? a.num_decode_tokens : a.num_tokens;
  const int G = a.num_heads / a.num_kv_heads;
  const int64_t units =
      int64_t(std::max(tokens, 1)) * a.num_kv_heads * (G / decode_heads_per_group(G));
  const int sms = std::max(num_sms, 1);
  if (units >= int64_t(kWarpsPerSm) * sms || (units >= sms && len <= kShortLen)) return plan;
  const int64_t target = int64_t(kWarpsPerSm) * sms;
  int splits = static_cast<int>(std::min<int64_t>((target + units - 1) / units, kDecodeMaxSplits));
  splits = std::min(splits, (len + kTiledKeys - 1) / kTiledKeys);
  while (splits > 1 && attention_workspace_needed(a, splits) > a.workspace_bytes) --splits;
  if (splits <= 1) return plan;
  const int split_len = ((len + splits - 1) / splits + kTiledKeys - 1) / kTiledKeys * kTiledKeys;
  return {(len + split_len - 1) / split_len, split_len, true};
}

// MIXSERVE_DECODE_TILED=0 puts every decode token on the split-K stream kernel (A/B
// measurements; the tiled kernel was faster at every decode size measured, 1 - 1,024 tokens x
// 193 - 4,096 keys, except batch 1 at 193 - 512 keys, where plan_decode_splits keeps the stream
// kernel).
bool tiled_decode_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("MIXSERVE_DECODE_TILED");
    return env == nullptr || std::string_view(env) != "0";
  }();
  return enabled;
}

}  // namespace

bool decode_whole_tiles() {
  static const bool enabled = [] {
    const char* env = std::getenv("MIXSERVE_DECODE_WHOLE_TILES");
    return env != nullptr && std::string_view(env) == "1";
  }();
  return enabled;
}

int decode_tiled_blocks() {
  static const int blocks = [] {
    const char* env = std::getenv("MIXSERVE_DECODE_TILED_BLOCKS");
    return env != nullptr && std::string_view(env) == "4" ? 4 : 3;
  }();
  return blocks;
}

DecodeSplitPlan plan_decode_splits(const AttentionArgs& a, int num_sms) {
  constexpr int kMinSplitLen = 64;  // keys: below this the merge costs more than it hides
  constexpr int kBlocksPerSm = 8;   // enough resident blocks to keep loads in flight
  DecodeSplitPlan plan{1, 1 << 30};
  int len = a.max_context;
  if (a.sliding_window > 0) len = std::min(len, a.sliding_window);
  if (a.num_kv_heads <= 0) return plan;
  const int tokens = a.num_decode_tokens >= 0 ? a.num_decode_tokens : a.num_tokens;
  const int G = a.num_heads / a.num_kv_heads;
  const int64_t units =
      int64_t(std::max(tokens, 1)) * a.num_kv_heads * (G / decode_heads_per_group(G));
  // Fewer (token, KV head) pairs than SMs over short contexts (batch 1): both kernels take
  // ~15 us, launch- and latency-bound; the stream kernel measured the same or up to 1 us faster.
  constexpr int kStreamMaxLen = 512;
  const bool few_short = units < num_sms && len <= kStreamMaxLen;
  if (len > 0 && !few_short && tiled_decode_enabled()) return plan_tiled_splits(a, len, num_sms);
  if (len <= kMinSplitLen || a.workspace == nullptr) return plan;
  const int64_t target = int64_t(kBlocksPerSm) * std::max(num_sms, 1);
  int splits = static_cast<int>(std::min<int64_t>((target + units - 1) / units, kDecodeMaxSplits));
  splits = std::min(splits, (len + kMinSplitLen - 1) / kMinSplitLen);
  while (splits > 1 && attention_workspace_needed(a, splits) > a.workspace_bytes) --splits;
  if (splits <= 1) return plan;
  const int split_len = ((len + splits - 1) / splits + 63) / 64 * 64;
  return {(len + split_len - 1) / split_len, split_len};
}

cudaError_t paged_attention_planned(const AttentionArgs& a, const DecodeSplitPlan& plan, DType dt,
                                    cudaStream_t stream) {
  if (a.num_tokens <= 0) return cudaSuccess;
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0) return cudaErrorInvalidValue;
  if (a.num_heads / a.num_kv_heads > 32) return cudaErrorInvalidValue;
  if (plan.num_splits < 1 || plan.num_splits > kDecodeMaxSplits) return cudaErrorInvalidValue;
  if (plan.num_splits > 1 && attention_workspace_needed(a, plan.num_splits) > a.workspace_bytes) {
    return cudaErrorInvalidValue;
  }
  if (a.head_dim == 64) return launch_fast<64>(a, plan, dt, stream);
  if (a.head_dim == 128) return launch_fast<128>(a, plan, dt, stream);
  return paged_attention_generic(a, dt, stream);
}

cudaError_t paged_attention(const AttentionArgs& a, DType dt, cudaStream_t stream) {
  DecodeSplitPlan plan;
  if (fast_head_dim(a.head_dim)) {
    int device = 0, sms = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess) {
      err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    }
    if (err != cudaSuccess) return err;
    plan = plan_decode_splits(a, sms);
  }
  return paged_attention_planned(a, plan, dt, stream);
}

}  // namespace mixserve::cuda
