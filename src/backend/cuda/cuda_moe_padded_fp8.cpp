// The grouped, padded FP8 MoE of small steps (moe_padded_fp8.h): the sequence of launches after
// the router, and CudaBackend's choice of it (which also lets FP8 decode steps be captured as
// CUDA graphs: nothing in them reads back to the host).
//
// Shapes: T tokens of the step (also the capacity C of each group), E experts, K top-k,
// G groups, H hidden, F FFN size.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/cublas_util.h"
#include "backend/cuda/cublaslt_batched_fp8.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/moe_padded_fp8.h"
#include "backend/cuda/stream_fork.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::cuda {

MoeGroupFp8Args moe_group_args(const MoeGroupedFp8Step& s) {
  const int tiers = s.counted ? s.tiers : 1;
  MoeGroupFp8Args g;
  g.counts = s.counts;
  g.E = s.E;
  g.G = s.groups();
  g.C = s.capacity();
  g.experts_in_order = s.strided;
  g.by_count = tiers > 1;
  g.group_expert = s.group_expert;
  g.group_count = s.group_count;
  g.expert_group = s.expert_group;
  g.ptrs = s.strided ? nullptr : s.ptrs;
  g.x_q = s.x_q;
  g.w13 = s.w13;
  g.raw13 = s.raw13;
  g.act_q = s.act_q;
  g.w2 = s.w2;
  g.raw2 = s.raw2;
  g.H = s.H;
  g.F = s.F;
  g.experts = s.experts;
  g.offsets = s.offsets;
  g.pair_pos = s.pair_pos;
  g.pairs = s.T * s.K;
  return g;
}

void moe_presync_group_fp8(const MoeGroupedFp8Step& s, int align, int max_rows, int32_t* layout,
                           cudaStream_t stream) {
  MIXSERVE_CHECK(!s.strided && layout != nullptr, "pre-sync MoE group: pointer arrays only");
  MoeGroupFp8Args g = moe_group_args(s);
  g.derive_layout = true;
  g.align = align;
  g.max_rows = max_rows;
  g.layout = layout;
  MIXSERVE_CUDA_CHECK(moe_group_experts_fp8(g, stream));
  MIXSERVE_CUDA_CHECK(gather_rows_grouped_fp8_derived(s.h_q, s.h_scale, s.group_expert,
                                                      s.group_count, s.offsets, s.sorted_token,
                                                      layout, max_rows, s.H, s.x_q, s.x_scale,
                                                      stream));
}

void moe_grouped_fp8(const MoeGroupedFp8Step& s, CublasLtBatchedFp8& gemm, cudaStream_t stream) {
  const int T = s.T, E = s.E, K = s.K, H = s.H, F = s.F, G = s.groups(), C = s.capacity();
  MIXSERVE_CHECK(!s.counted || (!s.strided && G > 0 && G <= E && C > 0),
                 "grouped FP8 MoE: a counted step needs pointer arrays, 0 < G <= E and C > 0");
  const int tiers = s.counted ? s.tiers : 1;
  MIXSERVE_CHECK(tiers >= 1 && tiers <= kMaxCountedTiers, "grouped FP8 MoE: ", tiers, " tiers");
  for (int t = 0; t < tiers && tiers > 1; ++t) {
    const CountedTier& r = s.tier[t];
    MIXSERVE_CHECK(r.begin == (t == 0 ? 0 : s.tier[t - 1].end) && r.end > r.begin &&
                       r.capacity > 0 && r.capacity <= C && (t + 1 < tiers || r.end == G),
                   "grouped FP8 MoE: tier ", t, " [", r.begin, ", ", r.end, ") x ", r.capacity,
                   " does not cover ", G, " groups of ", C, " rows in order");
  }
  if (!s.counted) {
    MIXSERVE_CUDA_CHECK(moe_sort(s.experts, T, K, std::max(E, s.sort_buckets), s.counts,
                                 s.offsets, s.sorted_token, s.pair_pos, stream));
  }
  if (!(s.counted && s.pre_grouped)) {
    MIXSERVE_CUDA_CHECK(moe_group_experts_fp8(moe_group_args(s), stream));
    MIXSERVE_CUDA_CHECK(gather_rows_grouped_fp8(s.h_q, s.h_scale, s.group_expert, s.group_count,
                                                s.offsets, s.sorted_token, G, C, H, s.x_q,
                                                s.x_scale, stream));
  }
  // Per group: [C, H] x [2F, H]^T -> raw [C, 2F] bf16; scales + SiLU·mul + quantization;
  // [C, F] x [H, F]^T -> raw [C, H] bf16; scales + weighted combine.
  // A tier's launch: groups [b, b + n) of the [6, G] pointer arrays, M rows each, on `st` with
  // GEMM workspace `slot`.
  auto w13_gemm = [&](int b, int n, int M, cudaStream_t st, int slot) {
    gemm.matmul_pointers(s.ptrs + b, s.ptrs + G + b, const_cast<void* const*>(s.ptrs + 2 * G + b),
                         M, 2 * F, H, n, DType::kBF16, st, s.counted, slot);
  };
  auto w2_gemm = [&](int b, int n, int M, cudaStream_t st, int slot) {
    gemm.matmul_pointers(s.ptrs + 3 * G + b, s.ptrs + 4 * G + b,
                         const_cast<void* const*>(s.ptrs + 5 * G + b), M, H, F, n, DType::kBF16,
                         st, s.counted, slot);
  };
  using Concurrency = MoeGroupedFp8Step::TierConcurrency;
  Concurrency mode = tiers > 1 && s.tier_streams != nullptr && s.tier_events != nullptr &&
                             gemm.slots() >= tiers
                         ? s.tier_concurrency
                         : Concurrency::kSerial;
  // A tier GEMM that would autotune times itself on its stream: this step runs them serially.
  for (int t = 0; t < tiers && mode != Concurrency::kSerial; ++t) {
    const int n = s.tier[t].end - s.tier[t].begin, M = s.tier[t].capacity;
    if (gemm.will_time(M, 2 * F, H, n, DType::kBF16, s.counted) ||
        (s.tier_w2 && gemm.will_time(M, H, F, n, DType::kBF16, s.counted))) {
      mode = Concurrency::kSerial;
    }
  }
  auto tier_stream = [&](int t) {
    return t == 0 || mode == Concurrency::kSerial ? stream : s.tier_streams[t];
  };
  auto fork = [&] { fork_streams(stream, s.tier_streams, s.tier_events, tiers); };
  auto join = [&] { join_streams(stream, s.tier_streams, s.tier_events, tiers); };
  auto each_tier = [&](const auto& launch) {
    for (int t = 0; t < tiers; ++t) {
      launch(s.tier[t].begin, s.tier[t].end - s.tier[t].begin, s.tier[t].capacity,
             tier_stream(t), mode == Concurrency::kSerial ? 0 : t);
    }
  };
  if (s.strided) {
    gemm.matmul_strided(s.x_q, int64_t{C} * H, s.w13, int64_t{2} * F * H, s.raw13,
                        int64_t{C} * 2 * F, C, 2 * F, H, G, DType::kBF16, stream);
  } else if (tiers > 1) {
    if (mode != Concurrency::kSerial) fork();
    each_tier(w13_gemm);
    if (mode != Concurrency::kSerial) join();
  } else {
    w13_gemm(0, G, C, stream, 0);
  }
  MIXSERVE_CUDA_CHECK(silu_mul_grouped_fp8(s.raw13, s.x_scale, s.w13_scale, s.group_expert,
                                           s.group_count, G, C, F, s.act_q, s.act_scale, stream));
  if (s.strided) {
    gemm.matmul_strided(s.act_q, int64_t{C} * F, s.w2, int64_t{H} * F, s.raw2, int64_t{C} * H, C,
                        H, F, G, DType::kBF16, stream);
  } else if (tiers > 1 && s.tier_w2) {
    if (mode != Concurrency::kSerial) fork();
    each_tier(w2_gemm);
    if (mode != Concurrency::kSerial) join();
  } else {
    w2_gemm(0, G, C, stream, 0);
  }
  if (s.defer_combine) return;
  MIXSERVE_CUDA_CHECK(moe_combine_grouped_fp8(s.raw2, s.act_scale, s.w2_scale, s.experts,
                                              s.expert_weights, s.pair_pos, T, K, H, E, s.out,
                                              stream));
}

CudaBackend::Fp8Grouped CudaBackend::fp8_grouped_mode(int T) const {
  const ModelConfig& c = config_;
  if (!options_.fp8 || !c.moe || batched_fp8_ == nullptr) return Fp8Grouped::kNone;
  // E: the experts computed here (a shard's under expert parallelism).
  const int E = local_experts(), K = c.num_experts_per_tok, H = c.hidden_size;
  const int F = c.intermediate_size;
  if (T <= 0 || T * K > options_.moe_padded_max_rows) return Fp8Grouped::kNone;
  // The mode depends on T only: decided once per step size, not once per layer.
  if (auto it = fp8_grouped_by_tokens_.find(T); it != fp8_grouped_by_tokens_.end()) {
    return it->second;
  }
  Fp8Grouped& mode = fp8_grouped_by_tokens_[T];
  mode = Fp8Grouped::kNone;
  const std::string& forced = fp8_grouped_forced_;  // MIXSERVE_FP8_GROUPED, for measurements
  using Mode = CublasLtBatchedFp8::Mode;
  auto both = [&](Mode m, int G) {
    return batched_fp8_->supported(m, T, 2 * F, H, G, DType::kBF16) &&
           batched_fp8_->supported(m, T, H, F, G, DType::kBF16);
  };
  // Pointer arrays read only the routed experts' weights (G = min(E, T*K)); strided batches
  // (G = E, every expert) are the fallback once every expert is likely to have rows.
  if (forced != "strided" && both(Mode::kPointerArray, std::min(E, T * K))) {
    mode = Fp8Grouped::kPointerArray;
  } else if (forced != "pointers" && T * K >= E && both(Mode::kStrided, E)) {
    mode = Fp8Grouped::kStrided;
  }
  return mode;
}

MoeGroupedFp8Step CudaBackend::grouped_fp8_step(int l, int T) const {
  const ModelConfig& c = config_;
  const CudaLayerWeights w = weights_.layer(l);
  MoeGroupedFp8Step s;
  s.T = T;
  s.E = local_experts();
  s.K = c.num_experts_per_tok;
  s.H = c.hidden_size;
  s.F = c.intermediate_size;
  s.h_q = ws_.h_q;
  s.h_scale = ws_.h_scale;
  s.experts = ws_.experts;
  s.expert_weights = ws_.expert_weights;
  s.w13 = static_cast<const uint8_t*>(w.w13);
  s.w13_scale = w.w13_scale;
  s.w2 = static_cast<const uint8_t*>(w.w2);
  s.w2_scale = w.w2_scale;
  s.counts = ws_.counts;
  s.offsets = ws_.offsets;
  s.sorted_token = ws_.sorted_token;
  s.pair_pos = ws_.pair_pos;
  // moe_groups_: group_expert, group_count, expert_group [kMaxExperts] each, then the pointers.
  s.group_expert = moe_groups_.as<int32_t>();
  s.group_count = s.group_expert + kMaxExperts;
  s.expert_group = s.group_count + kMaxExperts;
  s.ptrs = moe_groups_.as<const void*>(3 * kMaxExperts * sizeof(int32_t));
  s.x_q = ws_.gathered_q;
  s.x_scale = ws_.gathered_scale;
  s.raw13 = ws_.gate_up;  // bf16, 2 bytes as dt
  s.act_q = ws_.act_q;
  s.act_scale = ws_.act_scale;
  s.raw2 = ws_.expert_out;
  s.out = ws_.delta;
  return s;
}

bool CudaBackend::moe_padded_fp8(int l, int T) {
  const int E = local_experts(), K = config_.num_experts_per_tok;
  const Fp8Grouped mode = fp8_grouped_mode(T);
  if (mode == Fp8Grouped::kNone) return false;
  // The grouped rows (G * T) share the workspace's MoE buffers (decode steps size it for their
  // bucket; a larger prefill-sized step here takes the per-expert path).
  const int G = mode == Fp8Grouped::kStrided ? E : std::min(E, T * K);
  if (size_t(G) * T > ws_moe_rows_) return false;
  MoeGroupedFp8Step s = grouped_fp8_step(l, T);
  s.sort_buckets = route_tokens(l, T);  // all experts, or E + 1 under expert parallelism
  s.strided = mode == Fp8Grouped::kStrided;
  s.defer_combine = defer_moe_combine(l);
  moe_grouped_fp8(s, *batched_fp8_, stream_);
  if (s.defer_combine) deferred_combine_layer_ = l;
  return true;
}

bool CudaBackend::defer_moe_combine(int l) const {
  return fused_combine_ && options_.shard.size <= 1 && l + 1 < config_.num_hidden_layers &&
         add_rms_norm_fp8_moe_supported(config_.hidden_size, config_.num_experts_per_tok);
}

std::optional<CountedLayout> plan_counted_layout(const int32_t* counts, int E, double max_padding,
                                                 size_t max_rows, int align, int max_tiers,
                                                 double min_gain, int cost_align,
                                                 int floor_rows) {
  if (max_padding <= 0.0 || align <= 0) return std::nullopt;
  int G = 0, C = 0;
  int64_t pairs = 0;  // this rank's pairs (all T*K unless expert parallel)
  counted_groups_and_capacity(counts, E, align, &G, &C, &pairs);
  if (G == 0) return std::nullopt;
  auto round_up = [align](int64_t n) { return int((n + align - 1) / align * align); };
  const int64_t rows = int64_t{G} * C;
  // Imbalanced routing would make the padding cost more than one GEMM per expert does.
  if (size_t(rows) > max_rows ||
      double(rows) > max_padding * double(pairs) + double(G) * align) {
    return std::nullopt;
  }
  CountedLayout layout;
  layout.groups = G;
  layout.capacity = C;
  layout.tier[0] = CountedTier{0, G, C};
  max_tiers = std::clamp(max_tiers, 1, std::min(kMaxCountedTiers, G));
  if (max_tiers == 1) return layout;
  // The groups' counts in the device's by_count order: largest first, ties by expert.
  std::vector<int> order;
  for (int e = 0; e < E; ++e) {
    if (counts[e] > 0) order.push_back(e);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return counts[a] > counts[b]; });
  // cap: a tier's M; cost: the rows its GEMM tiles cover (cost_align: the tile's M), at least
  // floor_rows (below it the GEMM reads the expert's weights in the same time).
  std::vector<int> cap(G);
  std::vector<int64_t> cost(G);
  const int64_t tile = std::max(cost_align, align);
  for (int g = 0; g < G; ++g) {
    cap[g] = round_up(counts[order[g]]);
    cost[g] = std::max<int64_t>((cap[g] + tile - 1) / tile * tile, floor_rows);
  }
  // best[t][i]: the least cost for groups [i, G) in at most t tiers (a tier [i, j) costs
  // (j - i) x cost[i] rows); cut[t][i]: where that first tier ends.
  constexpr int64_t kInf = INT64_MAX / 4;
  std::vector<std::vector<int64_t>> best(max_tiers + 1, std::vector<int64_t>(G + 1, kInf));
  std::vector<std::vector<int>> cut(max_tiers + 1, std::vector<int>(G + 1, G));
  for (int t = 0; t <= max_tiers; ++t) best[t][G] = 0;
  for (int t = 1; t <= max_tiers; ++t) {
    for (int i = G - 1; i >= 0; --i) {
      for (int j = i + 1; j <= G; ++j) {
        if (best[t - 1][j] >= kInf) continue;
        const int64_t r = int64_t{j - i} * cost[i] + best[t - 1][j];
        if (r < best[t][i]) {
          best[t][i] = r;
          cut[t][i] = j;
        }
      }
    }
  }
  // More tiers only where each one saves more than min_gain x pairs rows.
  const double price = std::max(0.0, min_gain) * double(pairs);
  int tiers = 1;
  for (int t = 2; t <= max_tiers; ++t) {
    if (double(best[tiers][0] - best[t][0]) > price * (t - tiers)) tiers = t;
  }
  layout.tiers = 0;
  for (int i = 0, t = tiers; i < G; --t) {
    const int j = cut[t][i];
    layout.tier[layout.tiers++] = CountedTier{i, j, cap[i]};
    i = j;
  }
  if (layout.tiers == 1) layout.tier[0] = CountedTier{0, G, C};
  return layout;
}

bool CudaBackend::moe_counted_fp8(int l, int T, const int32_t* counts, bool pre_grouped) {
  if (batched_fp8_ == nullptr) return false;
  const int H = config_.hidden_size, F = config_.intermediate_size;
  const std::optional<CountedLayout> layout =
      plan_counted_layout(counts, local_experts(), options_.moe_counted_max_padding,
                          ws_moe_rows_, kCountedRowAlign, options_.moe_counted_tiers,
                          options_.moe_counted_tier_min_gain, options_.moe_counted_tier_align,
                          options_.moe_counted_tier_floor_rows);
  if (!layout) return false;
  const int G = layout->groups, C = layout->capacity;
  using Mode = CublasLtBatchedFp8::Mode;
  if (!batched_fp8_->supported(Mode::kPointerArray, C, 2 * F, H, G, DType::kBF16) ||
      !batched_fp8_->supported(Mode::kPointerArray, C, H, F, G, DType::kBF16)) {
    return false;
  }
  bool tiered = layout->tiers > 1;
  for (int t = 0; t < layout->tiers && tiered; ++t) {
    const CountedTier& r = layout->tier[t];
    tiered = batched_fp8_->supported(Mode::kPointerArray, r.capacity, 2 * F, H, r.end - r.begin,
                                     DType::kBF16) &&
             (!options_.moe_counted_tier_w2 ||
              batched_fp8_->supported(Mode::kPointerArray, r.capacity, H, F, r.end - r.begin,
                                      DType::kBF16));
  }
  MoeGroupedFp8Step s = grouped_fp8_step(l, T);
  s.counted = true;
  s.G = G;
  s.C = C;
  // The pre-sync group formed the same layout on the device (plan_counted_layout's G and C;
  // rows <= ws_moe_rows_ both ways), in count order, which a one-tier plan does not need and
  // does not mind (the rows' values do not depend on their group's place).
  s.pre_grouped = pre_grouped;
  if (tiered) {
    s.tiers = layout->tiers;
    std::copy(layout->tier, layout->tier + layout->tiers, s.tier);
    s.tier_w2 = options_.moe_counted_tier_w2;
    s.tier_concurrency =
        static_cast<MoeGroupedFp8Step::TierConcurrency>(options_.moe_counted_tier_streams);
    s.tier_streams = lanes_.data();
    s.tier_events = lane_events_.data();
  }
  s.defer_combine = defer_moe_combine(l);
  moe_grouped_fp8(s, *batched_fp8_, stream_);
  if (s.defer_combine) deferred_combine_layer_ = l;
  ++counted_moe_layers_;
  for (int e = 0; e < local_experts(); ++e) counted_moe_pairs_ += counts[e];
  counted_moe_rows_ += int64_t{G} * C;
  const int64_t w13_rows = tiered ? layout->tiered_rows() : int64_t{G} * C;
  counted_moe_w13_rows_ += w13_rows;
  counted_moe_w2_rows_ += tiered && s.tier_w2 ? w13_rows : int64_t{G} * C;
  counted_moe_tiers_ += s.tiers;
  return true;
}

void CudaBackend::pretune_counted_moe() {
  const ModelConfig& c = config_;
  if (!options_.fp8 || !c.moe || batched_fp8_ == nullptr ||
      options_.moe_counted_max_padding <= 0.0 || c.num_hidden_layers <= 0) {
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int E = local_experts(), H = c.hidden_size, F = c.intermediate_size;
  const int64_t max_rows = int64_t(ws_moe_rows_);
  // A group holds at most one row a token; the rows of all groups fit the workspace.
  const int max_m = std::min<int64_t>(ws_tokens_, max_rows);
  std::vector<int> ms;
  for (int m = 64; m <= 512; m += 64) ms.push_back(m);
  for (int m = 1024; m < 2 * max_m; m *= 2) ms.push_back(m);
  std::vector<int> batches;
  for (int b : {1, 3, 8}) batches.push_back(std::min(b, E));
  batches.erase(std::unique(batches.begin(), batches.end()), batches.end());
  struct Gemm {
    int N, K;
    const uint8_t *x, *w;  // x: the [rows, K] E4M3 inputs; w: [E, N, K]
    void* y;               // [rows, N] bf16
  };
  const CudaLayerWeights w = weights_.layer(0);
  const Gemm gemms[2] = {
      {2 * F, H, ws_.gathered_q, static_cast<const uint8_t*>(w.w13), ws_.gate_up},
      {H, F, ws_.act_q, static_cast<const uint8_t*>(w.w2), ws_.expert_out}};
  // Inputs: random values in [-2, 2) rounded to bf16 (gate_up as scratch), then E4M3 rows.
  bool inputs = false;
  auto make_inputs = [&] {
    const int64_t rows = max_rows;
    MIXSERVE_CUDA_CHECK(fill_synthetic(ws_.gate_up, DType::kBF16, rows * H, 0x5eed0001, 2.0,
                                       false, stream_));
    MIXSERVE_CUDA_CHECK(quantize_rows_fp8(ws_.gate_up, DType::kBF16, rows, H, ws_.gathered_q,
                                          ws_.gathered_scale, stream_));
    MIXSERVE_CUDA_CHECK(fill_synthetic(ws_.gate_up, DType::kBF16, rows * F, 0x5eed0002, 2.0,
                                       false, stream_));
    MIXSERVE_CUDA_CHECK(quantize_rows_fp8(ws_.gate_up, DType::kBF16, rows, F, ws_.act_q,
                                          ws_.act_scale, stream_));
    inputs = true;
  };
  const void** ptrs = moe_groups_.as<const void*>(3 * kMaxExperts * sizeof(int32_t));
  int timed = 0;
  for (const int cls : ms) {
    for (const int b : batches) {
      // The class's largest M that a step of this workspace can have with b groups.
      const int m = int(std::min<int64_t>({cls, max_m, max_rows / b}));
      if (m <= 0 || gemm_m_class(m) != cls) continue;  // no step reaches this class
      for (const Gemm& g : gemms) {
        if (!batched_fp8_->will_time(m, g.N, g.K, b, DType::kBF16, true) ||
            !batched_fp8_->supported(CublasLtBatchedFp8::Mode::kPointerArray, m, g.N, g.K, b,
                                     DType::kBF16)) {
          continue;
        }
        if (!inputs) make_inputs();
        std::vector<const void*> host(3 * size_t(b));
        for (int i = 0; i < b; ++i) {
          host[i] = g.x + size_t(i) * m * g.K;
          host[b + i] = g.w + size_t(i) * g.N * g.K;
          host[2 * b + i] = static_cast<char*>(g.y) + size_t(i) * m * g.N * 2;
        }
        MIXSERVE_CUDA_CHECK(cudaMemcpyAsync(ptrs, host.data(), host.size() * sizeof(void*),
                                            cudaMemcpyHostToDevice, stream_));
        batched_fp8_->matmul_pointers(ptrs, ptrs + b, const_cast<void* const*>(ptrs + 2 * b), m,
                                      g.N, g.K, b, DType::kBF16, stream_, true, 0);
        MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));  // host array reused
        ++timed;
      }
    }
  }
  // The per-token GEMMs of an FP8 step (scaled qkv and wo, the router, the LM head) by their
  // M classes too, on the workspace buffers the forward pass gives them (the same alignment,
  // so the same shape keys); CublasLtGemm tunes a class on its first call.
  const int dense_before = gemm_->tuned_classes();
  const int width = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
  const int HqD = c.num_attention_heads * c.head_dim;
  const DType dt = options_.dtype;
  const int T = ws_tokens_, R = ws_logits_rows_;
  MIXSERVE_CUDA_CHECK(fill_synthetic(ws_.gate_up, DType::kBF16, int64_t{T} * HqD, 0x5eed0003,
                                     2.0, false, stream_));
  MIXSERVE_CUDA_CHECK(quantize_rows_fp8(ws_.gate_up, DType::kBF16, T, H, ws_.h_q, ws_.h_scale,
                                        stream_));
  MIXSERVE_CUDA_CHECK(quantize_rows_fp8(ws_.gate_up, DType::kBF16, T, HqD, ws_.attn_q,
                                        ws_.attn_scale, stream_));
  MIXSERVE_CUDA_CHECK(fill_synthetic(ws_.h, dt, int64_t{T} * H, 0x5eed0004, 2.0, false, stream_));
  MIXSERVE_CUDA_CHECK(fill_synthetic(ws_.final_rows, dt, int64_t{R} * H, 0x5eed0005, 2.0, false,
                                     stream_));
  for (const int cls : ms) {
    const int m = std::min(cls, T);
    if (m <= 0 || gemm_m_class(m) != cls) continue;
    if (!fp8_unscaled_attention(m)) {
      gemm_->matmul_fp8(ws_.h_q, ws_.h_scale, static_cast<const uint8_t*>(w.wqkv), w.wqkv_scale,
                        ws_.qkv, m, width, H, dt, stream_);
      gemm_->matmul_fp8(ws_.attn_q, ws_.attn_scale, static_cast<const uint8_t*>(w.wo),
                        w.wo_scale, ws_.delta, m, H, HqD, DType::kF32, stream_);
    }
    gemm_->matmul(ws_.h, w.router, ws_.router_logits, m, c.num_local_experts, H, dt,
                  DType::kF32, stream_);
    const int r = std::min(cls, R);
    if (r > 0 && gemm_m_class(r) == cls) {
      gemm_->matmul(ws_.final_rows, weights_.lm_head(), ws_.logits, r, c.vocab_size, H, dt,
                    DType::kF32, stream_);
    }
  }
  MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("GEMM pre-tuning at setup: ", timed, " counted-MoE shape classes (",
            batched_fp8_->tuned_classes(), " in all) and ", gemm_->tuned_classes() - dense_before,
            " per-token ones (", gemm_->tuned_classes(), " in all) in ", s, " s");
}

std::vector<std::pair<std::string, double>> CudaBackend::counters() const {
  return {{"moe_counted_layers", double(counted_moe_layers_)},
          {"moe_counted_pairs", double(counted_moe_pairs_)},
          {"moe_counted_rows", double(counted_moe_rows_)},
          {"moe_counted_w13_rows", double(counted_moe_w13_rows_)},
          {"moe_counted_w2_rows", double(counted_moe_w2_rows_)},
          {"moe_counted_tiers", double(counted_moe_tiers_)},
          {"moe_lanes_layers", double(lanes_moe_layers_)}};
}

}  // namespace mixserve::cuda
