// The grouped, padded MoE of decode-sized steps under --quantization fp8 (W8A8): the layout of
// moe_padded.h (G groups of C = T rows, no host sync, capturable) with E4M3 GEMM inputs.
//
// One batched GEMM cannot give each group its own per-channel weight scales, so the two
// batched FP8 GEMMs (cublaslt_batched_fp8.h) compute raw sums and the kernels after them
// apply the scales in float32:
//   raw13[r, n] = sum_h x_q[r, h] w13_q[e, n, h]                       (bf16: fp32's range)
//   gate/up[r, n] = raw13[r, n] * x_scale[r] * w13_scale[e, n]
//   act = SiLU(gate) * up, quantized per row -> (act_q[r], act_scale[r])
//   raw2[r, h] = sum_f act_q[r, f] w2_q[e, h, f]                        (bf16: fp32's range)
//   out[t, h] = sum over t's slots k of weight[t, k] * act_scale[r] * w2_scale[e, h] * raw2[r, h]
// with r the grouped row of the pair and e its group's expert. The padding rows (j >=
// group_count[g]) hold zeros and scale 0, are computed and never read.
//
// Groups: by default as moe_padded.h (group g = the g-th expert with rows, G = min(E, T*K),
// operands found through pointer arrays); `experts_in_order` makes group g = expert g (G = E),
// for strided batches when pointer arrays are not available.
// Shapes: E experts, G groups, C rows per group, H hidden, F FFN size, T tokens, K top-k.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "model/dtype.h"

namespace mixserve::cuda {

struct MoeGroupFp8Args {
  const int32_t* counts = nullptr;  // [E] rows per expert (moe_sort)
  int E = 0, G = 0, C = 0;
  bool experts_in_order = false;    // group g = expert g; needs G == E
  // Groups ordered by count, largest first (ties: lower expert first), as the host's
  // plan_counted_layout orders them when it splits the groups into tiers; else expert order.
  bool by_count = false;
  int32_t* group_expert = nullptr;  // [G] out
  int32_t* group_count = nullptr;   // [G] out: rows of the group (0 for unused groups)
  int32_t* expert_group = nullptr;  // [E] out: group of each expert with rows, else -1
  // Out (may be null): [6, G] operand pointers of the two GEMMs: x13, w13, y13, x2, w2, y2.
  const void** ptrs = nullptr;
  const uint8_t* x_q = nullptr;  // [G*C, H] E4M3
  const uint8_t* w13 = nullptr;  // [E, 2F, H] E4M3
  void* raw13 = nullptr;         // [G*C, 2F] bf16
  const uint8_t* act_q = nullptr;  // [G*C, F] E4M3
  const uint8_t* w2 = nullptr;   // [E, H, F] E4M3
  void* raw2 = nullptr;          // [G*C, H] bf16
  int H = 0, F = 0;
  // Optional (pair_pos null: skipped): the pairs' sorted rows (moe_sort) mapped in place to
  // their grouped rows, expert_group[e] * C + (pair_pos[p] - offsets[e]), e = experts[p];
  // pairs with e >= E (expert parallel: another rank's) keep theirs.
  const int32_t* experts = nullptr;  // [pairs]
  const int32_t* offsets = nullptr;  // [E + 1]
  int32_t* pair_pos = nullptr;       // [pairs] in/out
  int pairs = 0;
  // Blocks that map the pairs: 0 = up to 264 of 512 pairs (1, as in sessions 1-11, under
  // MIXSERVE_MOE_SORT=block); n > 0: up to n.
  int max_blocks = 0;
  // The counted layout formed on the device, before the host has the counts (the pre-sync
  // group, CudaBackendOptions::moe_presync_group): G = the experts with rows, C = the largest
  // count rounded up to `align` (plan_counted_layout's groups and capacity), groups in count
  // order; a.G and a.C are ignored. layout: [2] out, {G, C}, or {0, 0} where G = 0 or G * C >
  // max_rows — then nothing else is written and the pairs keep their sorted rows.
  bool derive_layout = false;
  int align = 16, max_rows = 0;
  int32_t* layout = nullptr;
};
// Fills the groups and (where ptrs is set) the pointer arrays from the counts, then maps the
// pair positions (max_blocks). E <= 64, G <= E.
cudaError_t moe_group_experts_fp8(const MoeGroupFp8Args& args, cudaStream_t stream);

// dst_q[g*C + j] = src_q[tok], dst_scales[g*C + j] = src_scales[tok] with
// tok = sorted_token[offsets[group_expert[g]] + j] for j < group_count[g], else zeros and 0.
//   src_q: [*, H], H % 16 == 0; src_scales: [*]; offsets: [E+1]; sorted_token: [T*K];
//   dst_q: [G*C, H]; dst_scales: [G*C]
cudaError_t gather_rows_grouped_fp8(const uint8_t* src_q, const float* src_scales,
                                    const int32_t* group_expert, const int32_t* group_count,
                                    const int32_t* offsets, const int32_t* sorted_token, int G,
                                    int C, int H, uint8_t* dst_q, float* dst_scales,
                                    cudaStream_t stream);
// The same with G and C from the device (layout: [2] {G, C} of a derive_layout group, G * C <=
// max_rows; {0, 0}: nothing is written). One block a row of max_rows, those past G * C return.
cudaError_t gather_rows_grouped_fp8_derived(const uint8_t* src_q, const float* src_scales,
                                            const int32_t* group_expert,
                                            const int32_t* group_count, const int32_t* offsets,
                                            const int32_t* sorted_token, const int32_t* layout,
                                            int max_rows, int H, uint8_t* dst_q,
                                            float* dst_scales, cudaStream_t stream);
// Undoes a group's mapping of the pairs (for a layer the host then runs on the per-expert
// lanes): pair_pos[p] = offsets[e] + (pair_pos[p] - expert_group[e] * C) for e = experts[p]
// < E, C = layout[1]; nothing where layout[0] == 0 (the group mapped nothing).
cudaError_t moe_ungroup_pairs_fp8(const int32_t* experts, const int32_t* offsets,
                                  const int32_t* expert_group, const int32_t* layout, int E,
                                  int pairs, int32_t* pair_pos, cudaStream_t stream);

// Scales the raw w13 sums, SiLU(gate) * up in float32, quantized per row (see above).
//   raw13: [G*C, 2F] bf16; x_scales: [G*C]; w13_scales: [E, 2F]; act_q: [G*C, F];
//   act_scales: [G*C]. F % 8 == 0, F <= 16384; raw13 and w13_scales 16-byte aligned.
cudaError_t silu_mul_grouped_fp8(const void* raw13, const float* x_scales,
                                 const float* w13_scales, const int32_t* group_expert,
                                 const int32_t* group_count, int G, int C, int F, uint8_t* act_q,
                                 float* act_scales, cudaStream_t stream);

// out[t, h] = sum over k with e < E (ascending expert, as moe_combine) of
//   weights[t, k] * act_scales[r] * w2_scales[e, h] * raw2[r, h], r = pair_pos[t, k] (grouped
//   row), e = experts[t, k]. Slots with e >= E are skipped (expert parallel: another rank's).
//   raw2: [G*C, H] bf16; experts, weights, pair_pos: [T, K], K <= 16; w2_scales: [E, H];
//   out: [T, H]
cudaError_t moe_combine_grouped_fp8(const void* raw2, const float* act_scales,
                                    const float* w2_scales, const int32_t* experts,
                                    const float* weights, const int32_t* pair_pos, int T, int K,
                                    int H, int E, float* out, cudaStream_t stream);

// The combine above as the delta of the next norm (fp8_quant.cu): x[t] += out[t] of
// moe_combine_grouped_fp8 (same order, same float operations: bit-identical), then
// add_rms_norm_fp8 (fp8_kernels.h) of the row, in one pass that never writes out.
struct MoeCombineFp8 {
  const void* raw2 = nullptr;         // [G*C, H] bf16 (16-byte aligned)
  const float* act_scales = nullptr;  // [G*C]
  const float* w2_scales = nullptr;   // [E, H] (16-byte aligned)
  const int32_t* experts = nullptr;   // [T, K]
  const float* weights = nullptr;     // [T, K]
  const int32_t* pair_pos = nullptr;  // [T, K] grouped rows
  int K = 0, E = 0;
};
constexpr int kMoeCombineMaxTopK = 16;
// What add_rms_norm_fp8_moe takes: H % 4 == 0, H <= 8192, 0 < K <= 16.
inline bool add_rms_norm_fp8_moe_supported(int H, int K) {
  return H % 4 == 0 && H <= 8192 && K > 0 && K <= kMoeCombineMaxTopK;
}
//   x: [R, H] float, 16-byte aligned; w: [H] dt; out_half: [R, H] dt or null; q: [R, H];
//   scales: [R]. R = T, the step's tokens.
cudaError_t add_rms_norm_fp8_moe(float* x, const MoeCombineFp8& delta, int R, int H,
                                 const void* w, float eps, void* out_half, uint8_t* q,
                                 float* scales, DType dt, cudaStream_t stream);

// ---- cuda_moe_padded_fp8.cpp: the whole step after the router ----

// The counted layout of a step whose expert counts (counts[0..E), host memory) the host has
// read: G = the experts with rows, C = the largest count rounded up to `align` rows; group g's
// rows are [g * C, g * C + C) of the grouped buffers. Empty (std::nullopt) when no expert has
// rows, when max_padding <= 0 (off), when G * C exceeds `max_rows` (the workspace), or when
// the routing is too uneven: G * C > max_padding * (sum of counts) + G * align.
//
// Tiers (max_tiers > 1): one batched GEMM over G groups computes C rows of each, padding
// every expert to the largest one. Instead the groups, ordered by count (largest first, ties:
// lower expert first; by_count in MoeGroupFp8Args), are cut into up to max_tiers runs, and
// each run is one batched GEMM whose M is its own largest count, rounded up: groups [begin,
// end) compute rows [g * C, g * C + capacity). The layout stays G x C; the rows a tier does not
// compute are padding (zeros in the GEMM inputs, never read). A cut is made only where it saves
// more than min_gain x (sum of counts) GEMM rows, the price put on one more launch pair and its
// partial last wave. cost_align > align counts a tier's rows in whole GEMM tiles of that many
// rows (its capacity stays rounded to align) when choosing the cuts. floor_rows: a group costs
// at least that many rows, the M below which an expert's GEMM is bound by reading its weights
// (padding there costs nothing and a cut only adds a launch; OFF-2K's decode of batch 192,
// ~48 rows an expert, ran 7% slower cut).

// The counted layout's groups and capacity from the experts' counts: G = the experts with rows,
// C = the largest count rounded up to `align` (> 0). One formula for the host's
// plan_counted_layout and the device's pre-sync group (MoeGroupFp8Args::derive_layout), which
// must agree. pairs (may be null): the sum of the counts.
__host__ __device__ inline void counted_groups_and_capacity(const int32_t* counts, int E,
                                                            int align, int* G, int* C,
                                                            int64_t* pairs = nullptr) {
  int g = 0, most = 0;
  int64_t sum = 0;
  for (int e = 0; e < E; ++e) {
    const int32_t n = counts[e];
    g += n > 0;
    most = most > n ? most : n;
    sum += n;
  }
  *G = g;
  *C = (most + align - 1) / align * align;
  if (pairs != nullptr) *pairs = sum;
}

constexpr int kMaxCountedTiers = 4;
struct CountedTier {
  int begin = 0, end = 0, capacity = 0;
};
struct CountedLayout {
  int groups = 0, capacity = 0;
  int tiers = 1;  // tiers > 1: groups ordered by count
  CountedTier tier[kMaxCountedTiers];
  int64_t tiered_rows() const {  // rows the tiers' GEMMs compute
    int64_t rows = 0;
    for (int t = 0; t < tiers; ++t) rows += int64_t{tier[t].end - tier[t].begin} * tier[t].capacity;
    return rows;
  }
};
std::optional<CountedLayout> plan_counted_layout(const int32_t* counts, int E, double max_padding,
                                                 size_t max_rows, int align, int max_tiers = 1,
                                                 double min_gain = 0.0, int cost_align = 0,
                                                 int floor_rows = 0);

class CublasLtBatchedFp8;

// Device pointers of one grouped FP8 MoE step: T tokens, C rows per group. Two uses:
//   decode-sized steps (counted = false): C = T, G = min(E, T*K) (or E strided); the sort runs
//     here and nothing reads back to the host, so the step can be captured in a CUDA graph;
//   larger steps whose counts the host has read (counted = true, pointer arrays only): the
//     caller has sorted, G = the experts with rows, C = their largest count rounded up, so the
//     padding is what the routing's imbalance costs, not a factor of E.
struct MoeGroupedFp8Step {
  // E: the experts computed here (weights [E, ...]); sort_buckets: moe_sort's buckets, E or,
  // under expert parallelism, E + 1 (experts already localized: E = other ranks' pairs).
  int T = 0, E = 0, K = 0, H = 0, F = 0, sort_buckets = 0;
  bool strided = false;  // G = E groups in expert order, strided GEMMs; else pointer arrays
  bool counted = false;  // the sort is done and G, C are given (see above)
  int G = 0, C = 0;      // counted steps only
  // Counted steps: the GEMM launches (CountedLayout's tiers; one tier = all G groups with C
  // rows). tiers > 1 needs the groups ordered by count (by_count). tier_w2: the w2 GEMM runs
  // the tiers too; else one launch of G x C rows (the act rows past a tier's capacity are
  // padding, zeros).
  int tiers = 1;
  CountedTier tier[kMaxCountedTiers];
  bool tier_w2 = true;
  // How the tiers run (tiers > 1 and tier_streams set; else one after another on the caller's
  // stream). Concurrent tiers fill each other's partial last waves of GEMM tiles:
  //   kSerial: one after another;
  //   kGemms: each GEMM's tiers at once, tier t on tier_streams[t] (tier 0, the largest, on the
  //     caller's stream and first), joined before the one SiLU·mul and before the combine.
  // The GEMMs compute the same bits either way (the same algorithms; a step with a tier GEMM
  // that would autotune runs serially, see CublasLtBatchedFp8::will_time). Tier t uses GEMM
  // workspace slot t. (Measured and dropped, session 10: one stream a tier for its w1|w3,
  // SiLU·mul and w2, -1.5% on OFF-128: the persistent SiLU·mul blocks wait for whole SMs.)
  enum class TierConcurrency { kSerial = 0, kGemms = 1 };
  TierConcurrency tier_concurrency = TierConcurrency::kSerial;
  const cudaStream_t* tier_streams = nullptr;  // [kMaxCountedTiers]; [0] unused
  cudaEvent_t* tier_events = nullptr;          // [kMaxCountedTiers], disable-timing events
  const uint8_t* h_q = nullptr;          // [T, H] the FFN input, quantized per token
  const float* h_scale = nullptr;        // [T]
  const int32_t* experts = nullptr;      // [T, K] (moe_topk)
  const float* expert_weights = nullptr; // [T, K]
  const uint8_t* w13 = nullptr;          // [E, 2F, H]
  const float* w13_scale = nullptr;      // [E, 2F]
  const uint8_t* w2 = nullptr;           // [E, H, F]
  const float* w2_scale = nullptr;       // [E, H]
  // Scratch: the sort's outputs ([E], [E+1], [T*K], [T*K]), the groups ([G], [G], [E]) and
  // their [6, G] pointers, then the grouped rows (G*C of each).
  int32_t *counts = nullptr, *offsets = nullptr, *sorted_token = nullptr, *pair_pos = nullptr;
  int32_t *group_expert = nullptr, *group_count = nullptr, *expert_group = nullptr;
  const void** ptrs = nullptr;
  uint8_t* x_q = nullptr;      // [G*C, H]
  float* x_scale = nullptr;    // [G*C]
  void* raw13 = nullptr;       // [G*C, 2F] bf16
  uint8_t* act_q = nullptr;    // [G*C, F]
  float* act_scale = nullptr;  // [G*C]
  void* raw2 = nullptr;        // [G*C, H] bf16
  float* out = nullptr;        // [T, H]
  // Set: the combine is left to the next norm (add_rms_norm_fp8_moe with combine()); out is
  // not written.
  bool defer_combine = false;
  // Counted steps: the groups, pointer arrays, pair rows and gathered rows were made on the
  // device before the host had the counts (moe_presync_group_fp8, the same G and C); only the
  // GEMMs, SiLU·mul and the combine are left.
  bool pre_grouped = false;
  MoeCombineFp8 combine() const {
    return MoeCombineFp8{raw2, act_scale, w2_scale, experts, expert_weights, pair_pos, K, E};
  }
  int groups() const { return counted ? G : strided ? E : (E < T * K ? E : T * K); }
  int capacity() const { return counted ? C : T; }
};

// Sort (unless counted), group, gather, the two batched GEMMs, SiLU·mul + quantization,
// combine (unless deferred): enqueue only (no sync, no allocation once gemm's plans exist). Throws
// mixserve::Error on a failed launch.
void moe_grouped_fp8(const MoeGroupedFp8Step& s, CublasLtBatchedFp8& gemm, cudaStream_t stream);
// The group kernel's arguments for step s (its G and C, order and pointer targets).
MoeGroupFp8Args moe_group_args(const MoeGroupedFp8Step& s);
// Before the count read-back of a counted step (sorted, G and C not yet on the host): the
// groups of plan_counted_layout's G and C (align rows), in count order, their pointer arrays,
// the pairs' grouped rows and the gathered rows, all on the device (layout: [2] out {G, C}, or
// {0, 0} where G * C > max_rows: nothing done). If the host then runs the layer otherwise,
// moe_ungroup_pairs_fp8 gives the pairs their sorted rows back.
void moe_presync_group_fp8(const MoeGroupedFp8Step& s, int align, int max_rows, int32_t* layout,
                           cudaStream_t stream);

}  // namespace mixserve::cuda
