// CudaBackend: the Mixtral-family forward pass on one NVIDIA GPU in BF16 or FP16 (chosen at
// run time), float32 accumulation and residual stream. See docs/cuda-backend.md.
//
// Per step: the BatchPlan's arrays go to the device in one copy from a pinned buffer, all work
// runs on one stream, and the logits of plan.logits_rows come back as float32 (forward) or
// are sampled on the device (forward_and_sample, sampling.h). Steps of at most
// kPaddedMoeMaxRows (token, expert) pairs run the experts as two batched GEMMs over a padded
// layout (moe_padded.h; FP8: moe_padded_fp8.h) with no host sync; larger steps read the
// per-expert counts back once per MoE layer. Decode-only steps are padded to a bucket (1, 2, 4, ... tokens) and, unless
// enforce_eager, replayed as a CUDA graph captured per (bucket, block-table width).
//
// KV cache: one allocation of L * 2 (K, V) pools of N = num_blocks * block_size slots, slot =
// block * block_size + offset (the value in BatchPlan::slot_mapping), each pool head-major in
// tiles of 16 slots (kv_layout.h).
// Until allocate_kv_cache() is called, kv_cache_spec() reports how many blocks of 16 tokens
// fit in the memory left after weights and workspace (gpu_memory_fraction of the card).
//
// As one rank's shard of a tensor / expert parallel model (options.shard, docs/cuda-backend.md
// "CUDA shards"), it computes with the shard's local config and weight slices and sums the
// partial outputs of the o-projection and the FFN over the ranks (options.comm) before each
// residual add; rank 0 alone computes the logits.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/interval_timer.h"
#include "backend/cuda/cublas_batched.h"
#include "backend/cuda/cublaslt_batched_fp8.h"
#include "backend/cuda/cublaslt_gemm.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/cuda_weights.h"
#include "backend/cuda/device_buffer.h"
#include "dist/sharding.h"
#include "model/dtype.h"

namespace mixserve {
class Checkpoint;
}

namespace mixserve::cuda {

class DeviceCommunicator;  // nccl_communicator.h

struct CudaBackendOptions {
  DType dtype = DType::kBF16;         // kBF16 or kF16
  double gpu_memory_fraction = 0.90;  // of the card's memory, for weights + workspace + KV
  int max_num_tokens = 2048;          // tokens per step the workspace is sized for (grows)
  // Sequences per step (logits rows) the workspace is sized for; 0 = one per token. A step
  // with more logits rows grows it.
  int max_num_seqs = 0;
  int device = 0;
  // FP8 (docs/cuda-backend.md, "FP8"): projection weights in E4M3 with per-channel scales and
  // their inputs quantized per token (W8A8). Implied by an FP8 checkpoint.
  bool fp8 = false;
  // FP8 KV cache (--kv-cache-dtype fp8): E4M3 K and V with per-tensor scales per layer (1, or
  // the checkpoint's self_attn.k_scale / v_scale).
  bool kv_fp8 = false;
  bool enforce_eager = false;  // no CUDA graphs for decode steps
  bool device_sampling = true; // supports_device_sampling(): the engine samples on the GPU
  int moe_padded_max_rows = 256;  // kPaddedMoeMaxRows; 0 = always read the counts back
  // FP8 steps above it (counts read back) run the experts as batched GEMMs over G groups of the
  // largest count when the padded rows are at most this many times the pairs (+ alignment);
  // else one GEMM pair per expert. 0 = never (MIXSERVE_FP8_COUNTED=0 sets it, for measuring).
  double moe_counted_max_padding = 1.25;
  // Those steps' GEMMs in up to this many tiers of groups ordered by count, each padded to its
  // own largest count (plan_counted_layout in moe_padded_fp8.h; 1 = one launch over all
  // groups), a cut made where it saves more than moe_counted_tier_min_gain x the pairs rows;
  // tier_w2: the w2 GEMM too, else only w1|w3. MIXSERVE_MOE_TIERS, MIXSERVE_MOE_TIER_GAIN and
  // MIXSERVE_MOE_TIER_W2 set them, for measuring. 3 tiers: OFF-128 +0.9 to +1.7% on an H100
  // (docs/perf/NOTES.md, session 9); 4, or a lower gain, did not add to it.
  int moe_counted_tiers = 3;
  double moe_counted_tier_min_gain = 0.02;
  bool moe_counted_tier_w2 = true;
  int moe_counted_tier_align = 0;  // cost_align of plan_counted_layout; MIXSERVE_MOE_TIER_ALIGN
  // floor_rows of plan_counted_layout (MIXSERVE_MOE_TIER_FLOOR): an H100's FP8 GEMM is bound by
  // its weight reads below ~1,400 TFLOP/s / 3 TB/s / 2 = ~230 rows an expert.
  int moe_counted_tier_floor_rows = 256;
  // How the tiers run (MoeGroupedFp8Step::TierConcurrency: 0 one after another, 1 each GEMM's
  // tiers at once on the MoE lanes' streams); MIXSERVE_MOE_TIER_STREAMS.
  int moe_counted_tier_streams = 1;
  // Form the counted layer's groups, pointer arrays and gathered rows on the device right
  // after the sort, behind the counts' copy to the host and before the host waits for it, so
  // the GPU works while the host plans the GEMMs (moe_presync_group_fp8; the host's plan has
  // the same G and C; a layer it then runs on the lanes gets its pairs' sorted rows back).
  // MIXSERVE_MOE_PRESYNC=0 turns it off (session 12: tested bit-identical on an H100; OFF-128
  // +1.2% together with the tiled sort and gemm_pretune, docs/perf/NOTES.md).
  bool moe_presync_group = true;
  // At setup, time the counted MoE's batched FP8 GEMM candidates for every shape class the
  // workspace allows (M classes 64..512 by 64 and powers of two up to the step's tokens, batch
  // classes 1, 2-3 and 4-8; w1|w3 and w2), on layer 0's experts and random E4M3 rows, instead
  // of on first use inside a request's step (where OFF-128's larger classes, absent from its
  // 64-request warm-up, are tuned inside the measured run: docs/perf/NOTES.md session 12).
  // MIXSERVE_GEMM_PRETUNE=0 turns it off (~3 s at setup for Mixtral 8x7B at 16,384-token
  // steps, measured on an H100 in session 12).
  bool gemm_pretune = true;
  // Steps of at least this many tokens run the FP8 qkv and wo GEMMs unscaled
  // (fp8_unscaled_attention; 0: never). 513 = above the largest decode-graph bucket (512), so
  // graphs and eager steps of one size compute the same bits. MIXSERVE_FP8_UNSCALED_ATTN.
  // Off by default until measured on a GPU (docs/perf/NOTES.md, session 10).
  int fp8_unscaled_attn_min_tokens = 0;
  // Tensor / expert parallelism: the part of the model this backend holds (size 1: all of it)
  // and the all-reduce over its ranks (needed when shard.size > 1; see cuda_shard.cpp).
  dist::ShardSpec shard;
  std::shared_ptr<DeviceCommunicator> comm;
  // Carry the all-reduced partial sums in BF16 instead of float32 (MIXSERVE_TP_REDUCE=bf16).
  bool tp_reduce_bf16 = false;
};

// Largest step (T * top_k pairs) whose experts run as min(E, T*K) groups padded to T rows each
// (moe_padded.h): up to E / K times the useful FLOPs, still under the weight-read time at this
// size on a Hopper card (docs/perf/NOTES.md).
constexpr int kPaddedMoeMaxRows = 256;  // CudaBackendOptions::moe_padded_max_rows' default
constexpr int kMaxExperts = 64;  // check_config's bound

struct MoeGroupedFp8Step;  // moe_padded_fp8.h

class CudaBackend : public Backend {
 public:
  // A checkpoint (any of BF16/F16/F32) converted to options.dtype on the device.
  // With options.shard of size > 1: that shard's slices of the checkpoint.
  static std::unique_ptr<CudaBackend> load(const std::filesystem::path& model_dir,
                                           const CudaBackendOptions& options);
  // Random weights of config's shape made on the device, equal to `mixserve make-model` with
  // the same seed (before rounding both to the dtype); a shard's are slices of those.
  static std::unique_ptr<CudaBackend> synthetic(const ModelConfig& config, uint64_t seed,
                                                const CudaBackendOptions& options);
  ~CudaBackend() override;

  // The config computed with: the shard's local one (dist::ShardSpec::local_config).
  const ModelConfig& config() const override { return config_; }
  std::string name() const override { return name_; }
  size_t kv_bytes_per_token() const override;
  void allocate_kv_cache(const KvCacheSpec& spec) override;
  KvCacheSpec kv_cache_spec() const override;
  void forward(const BatchPlan& plan, std::span<float> logits_out) override;
  bool supports_device_sampling() const override { return options_.device_sampling; }
  void forward_and_sample(const BatchPlan& plan, const SamplingBatch& batch,
                          SampledTokens* out) override;
  // The same in two halves: the submit enqueues everything (its only host waits are the
  // counted MoE layers' count read-backs) and the collect synchronizes the stream.
  void submit_and_sample(const BatchPlan& plan, const SamplingBatch& batch) override;
  void collect_sampled(SampledTokens* out) override;

  DType dtype() const { return options_.dtype; }
  bool fp8() const { return options_.fp8; }
  bool kv_fp8() const { return options_.kv_fp8; }
  size_t weight_bytes() const { return weights_.bytes(); }
  cudaStream_t stream() const { return stream_; }
  int num_decode_graphs() const;  // CUDA graphs captured so far
  // MoE layers (over all steps) whose FP8 experts ran as counted grouped GEMMs.
  int64_t counted_moe_layers() const { return counted_moe_layers_; }
  // Shape classes of the counted MoE's batched FP8 GEMMs timed so far (gemm_pretune or use).
  int counted_gemm_tuned_classes() const {
    return batched_fp8_ ? batched_fp8_->tuned_classes() : 0;
  }
  int gemm_tuned_classes() const { return gemm_->tuned_classes(); }  // the other GEMMs'
  // moe_counted_layers, moe_counted_pairs (token-expert pairs of those layers), moe_counted_rows
  // (their layouts' G * C rows, padding included), moe_counted_w13_rows / moe_counted_w2_rows
  // (the rows the two GEMMs computed: G * C unless tiered), moe_counted_tiers (launches per
  // GEMM, summed over those layers), moe_lanes_layers (FP8 MoE layers of larger steps that ran
  // per-expert GEMMs on lanes: routing too uneven).
  std::vector<std::pair<std::string, double>> counters() const override;
  // Whether forward() writes logits: on every rank but a shard's workers (rank > 0), which
  // skip the final norm and the lm_head and leave logits_out untouched.
  bool computes_logits() const { return options_.shard.rank == 0; }

 private:
  // config: the full model's (the shard's local config is derived from it).
  CudaBackend(const ModelConfig& config, const CudaBackendOptions& options);
  void finish_setup();  // workspace + KV budget, after the weights are on the device
  void ensure_workspace(int num_tokens, int logits_rows);
  void upload_plan(const BatchPlan& plan);
  // Validates the plan and enqueues the model up to the logits of its R rows (ws_.logits).
  void run_model(const BatchPlan& plan);
  void enqueue_forward(int T, int R, int max_blocks_per_seq);  // reads plan_
  int decode_bucket(const BatchPlan& plan) const;               // 0: not a bucketed decode
  void run_decode(const BatchPlan& plan, int bucket);           // cuda_decode_step.cpp
  void feed_forward(int layer, int T);
  // FP8 (cuda_forward_fp8.cpp): the same steps with E4M3 GEMM inputs.
  void feed_forward_fp8(int layer, int T);
  // h = norm(x + delta) for the attention (qkv GEMM) or the FFN, in the dtype and, with FP8,
  // quantized (h_q, h_scale); then the qkv GEMM.
  void norm_and_qkv(int layer, int T);
  // wo GEMM of the attention output into delta, then the FFN's add + norm.
  void o_proj_and_norm(int layer, int T);
  // FP8 steps of at least fp8_unscaled_attn_min_tokens tokens on one GPU: the qkv and wo GEMMs
  // run without cuBLASLt's outer-vector scales (one 128 x 128 kernel for every shape; the
  // unscaled ones have many, autotuned), the per-token x per-channel scales applied by RoPE
  // and by the FFN's add + norm.
  bool fp8_unscaled_attention(int T) const;
  void moe_padded(int layer, int T);
  // FP8 MoE of small steps as G groups of T rows, no host sync (cuda_moe_padded_fp8.cpp): the
  // kind of batched GEMM a step of T tokens can use, and the layer's FFN that way (false: the
  // step does not qualify and nothing was enqueued).
  enum class Fp8Grouped { kNone, kPointerArray, kStrided };
  Fp8Grouped fp8_grouped_mode(int T) const;
  mutable std::map<int, Fp8Grouped> fp8_grouped_by_tokens_;  // fp8_grouped_mode's answers
  std::string fp8_grouped_forced_;  // MIXSERVE_FP8_GROUPED: "", "strided" or "pointers"
  bool moe_padded_fp8(int layer, int T);
  // FP8 MoE of a larger step whose expert counts were read back (after the sort): the same
  // grouped GEMMs with G = experts with rows and C = the largest count (rounded up to
  // kCountedRowAlign), unless the padding exceeds options' moe_counted_max_padding (then
  // false: the per-expert lanes).
  // pre_grouped: moe_presync_group_fp8 ran for this layer (its layout in moe_layout()).
  bool moe_counted_fp8(int layer, int T, const int32_t* counts, bool pre_grouped = false);
  int32_t* moe_layout() const {  // [2] {G, C} of the pre-sync group, after the pointers
    return moe_groups_.as<int32_t>(3 * kMaxExperts * sizeof(int32_t) +
                                   6 * kMaxExperts * sizeof(void*));
  }
  MoeGroupedFp8Step grouped_fp8_step(int layer, int T) const;  // the fields both paths share
  void pretune_counted_moe();  // gemm_pretune (above), from finish_setup
  int64_t counted_moe_layers_ = 0;  // MoE layers moe_counted_fp8 ran (counted_moe_layers())
  int64_t counted_moe_pairs_ = 0, counted_moe_rows_ = 0, lanes_moe_layers_ = 0;  // counters()
  int64_t counted_moe_w13_rows_ = 0, counted_moe_w2_rows_ = 0, counted_moe_tiers_ = 0;
  // The grouped FP8 MoE of layer l leaves its weighted combine to layer l + 1's attention
  // norm (add_rms_norm_fp8_moe), which adds it to x without the delta round trip: single
  // device only (shards all-reduce the delta), not the last layer (the final norm takes the
  // delta). MIXSERVE_FP8_FUSED_COMBINE=0 turns it off, for measurements.
  bool defer_moe_combine(int layer) const;
  bool fused_combine_ = true;
  int deferred_combine_layer_ = -1;  // the layer whose combine is pending, or -1
  static constexpr int kCountedRowAlign = 16;
  // Expert GEMMs of large MoE steps: experts round-robin over `lanes` streams forked from
  // stream_ (cuda_moe_lanes.cpp). A lane runs w13 -> SiLU·mul -> w2 of its experts.
  int moe_lanes(int active_experts) const;
  cudaStream_t lane_stream(int lane) const { return lane == 0 ? stream_ : lanes_[lane]; }
  void fork_lanes(int lanes);  // lanes 1.. wait for stream_'s work so far
  void join_lanes(int lanes);  // stream_ waits for lanes 1..
  // Shards (cuda_shard.cpp). Throws unless the shard and the communicator agree.
  void check_shard() const;
  std::string shard_label() const;  // ", tp 1/2" (empty unsharded)
  // ws_.delta [T, H] := its sum over the ranks (no-op unsharded).
  void all_reduce_delta(int T);
  bool graphs_allowed() const;  // decode graphs: not eager, and a capturable all-reduce
  // After moe_topk: under EP, ws_.experts become this rank's expert indices, other ranks'
  // pairs a last bucket that is neither computed nor combined. Returns the buckets moe_sort
  // sorts into (E; EP: local experts + 1); local_experts() the experts computed here.
  int localize_experts(int T);
  int local_experts() const;
  // Every MoE path's start (cuda_forward.cpp): router GEMM over ws_.h, top-k into ws_.experts /
  // ws_.expert_weights, then localize_experts. Returns its bucket count.
  int route_tokens(int layer, int T);
  // Large MoE steps: routes, sorts the pairs by expert (ws_.counts / offsets / sorted_token /
  // pair_pos), runs gather(buckets) — the precision's row gather — then copies the local
  // experts' row counts to the host (the one sync of the layer) and returns them.
  // after_copy (may be empty): work enqueued behind the counts' copy, before the host waits
  // for the copy alone (an event), e.g. moe_presync_group_fp8.
  const int32_t* route_sort_and_read_counts(int layer, int T,
                                            const std::function<cudaError_t(int)>& gather,
                                            const std::function<void()>& after_copy = {});
  void combine_experts(int T);  // moe_combine of the local pairs into ws_.delta
  void* kv_pool(int layer, int which) const;
  size_t kv_element_bytes() const { return options_.kv_fp8 ? 1 : dtype_size(options_.dtype); }
  // Reads the FP8 KV scales of a checkpoint (self_attn.k_scale / v_scale), where present.
  void load_kv_scales(const Checkpoint& checkpoint);

  // Device scratch of one step for up to ws_tokens_ tokens (see cuda_workspace.cpp).
  struct Workspace {
    float* x = nullptr;               // [T, H] residual stream
    float* delta = nullptr;           // [T, H] attention / FFN output before the residual add
    void* delta_bf16 = nullptr;       // [T, H] bf16: delta as all-reduced (tp_reduce_bf16 only)
    void* h = nullptr;                // [T, H] normed
    void* qkv = nullptr;              // [T, (Hq + 2 Hkv) D]
    void* attn = nullptr;             // [T, Hq D]
    float* router_logits = nullptr;   // [T, E]
    int32_t* experts = nullptr;       // [T, K]
    float* expert_weights = nullptr;  // [T, K]
    int32_t* counts = nullptr;        // [E]
    int32_t* offsets = nullptr;       // [E + 1]
    int32_t* sorted_token = nullptr;  // [T K]
    int32_t* pair_pos = nullptr;      // [T K]
    void* gathered = nullptr;         // [T K, H]
    void* gate_up = nullptr;          // [T K, 2F]
    void* act = nullptr;              // [T K, F]
    float* expert_out = nullptr;      // [T K, H]
    void* final_rows = nullptr;       // [T, H]
    float* logits = nullptr;          // [T, V]
    // FP8 only: E4M3 GEMM inputs and their per-row scales (see fp8_kernels.h).
    uint8_t* h_q = nullptr;           // [T, H]
    float* h_scale = nullptr;         // [T]
    uint8_t* attn_q = nullptr;        // [T, Hq D]
    float* attn_scale = nullptr;      // [T]
    uint8_t* gathered_q = nullptr;    // [T K, H]
    float* gathered_scale = nullptr;  // [T K + 3E] padded per expert
    uint8_t* act_q = nullptr;         // [T K, F]
    float* act_scale = nullptr;       // [T K + 3E] padded per expert
  };
  // Device copy of the step's plan arrays (one upload).
  struct PlanView {
    int32_t* token_ids = nullptr;     // [T]
    int32_t* positions = nullptr;     // [T]
    int32_t* seq_of_token = nullptr;  // [T]
    int32_t* block_tables = nullptr;  // [S, B]
    int32_t* logits_rows = nullptr;   // [R]
    int64_t* slots = nullptr;         // [T]
    int32_t* seq_offsets = nullptr;   // [S + 1]
  };

  ModelConfig config_;
  CudaBackendOptions options_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CublasLtGemm> gemm_;  // CublasLtGemm::kMaxLanes workspaces
  // Side streams of the MoE lanes (index 0 unused: lane 0 is stream_) and their events.
  std::array<cudaStream_t, CublasLtGemm::kMaxLanes> lanes_{};
  std::array<cudaEvent_t, CublasLtGemm::kMaxLanes> lane_events_{};
  cudaEvent_t counts_copied_ = nullptr;  // the counts' copy to the host (with after_copy work)
  int max_moe_lanes_ = CublasLtGemm::kMaxLanes;  // MIXSERVE_MOE_LANES overrides (1 to 4)
  IntervalTimer comm_timer_{"all-reduces"};  // a shard's all-reduces (MIXSERVE_COMM_TIMING=1)
  // The MoE's count read-backs (MIXSERVE_SYNC_TIMING=1): the device idles from the sort's end
  // until the host enqueues again.
  IntervalTimer sync_timer_{"expert-count read-backs"};
  // FP8 experts of large steps as unscaled GEMMs, the per-token x per-channel scales applied
  // in SiLU·mul and after w2 (BF16 only); MIXSERVE_FP8_UNSCALED=0 keeps cuBLASLt's scales.
  bool moe_fp8_unscaled_ = true;
  std::unique_ptr<CublasBatched> batched_;  // the grouped MoE GEMMs
  std::unique_ptr<CublasLtBatchedFp8> batched_fp8_;  // the same under FP8 (null otherwise)
  // Grouped MoE: group_expert, group_count, expert_group [kMaxExperts] int32 each, then the
  // [6, G] operand pointers. Allocated once: CUDA graphs hold its address.
  DeviceBuffer moe_groups_;
  CudaWeights weights_;
  DeviceBuffer inv_freq_;  // [D/2] float
  DeviceBuffer workspace_buf_;
  DeviceBuffer attn_workspace_;  // split-K attention partials (kAttentionWorkspaceBytes)
  Workspace ws_;
  int ws_tokens_ = 0;
  int ws_logits_rows_ = 0;  // rows of ws_.logits (<= ws_tokens_)
  size_t ws_moe_rows_ = 0;  // rows of the MoE's per-pair buffers (>= ws_tokens_ * top-k)
  DeviceBuffer plan_dev_;
  PinnedBuffer plan_host_;
  PlanView plan_;
  // Host fields of the step's attention (split plan inputs), set by run_model / run_decode
  // before enqueue_forward; a decode graph's depend only on its bucket.
  AttentionArgs attn_step_;
  PinnedBuffer counts_host_;  // [E] expert token counts read back per MoE layer
  // Decode steps by (bucket, block-table width): the padded plan's device copy and its graph.
  struct DecodeGraph {
    DecodeGraph() = default;
    DecodeGraph(const DecodeGraph&) = delete;
    DecodeGraph& operator=(const DecodeGraph&) = delete;
    ~DecodeGraph();
    DeviceBuffer plan_dev;
    cudaGraphExec_t exec = nullptr;
  };
  std::map<std::pair<int, int>, DecodeGraph> graphs_;
  // Device sampling: rows | entry offsets | entries in one pinned buffer, one copy.
  PinnedBuffer sample_host_;
  DeviceBuffer sample_dev_;
  PinnedBuffer ids_host_;   // [R]
  PinnedBuffer raw_host_;   // [rows with logprobs, V] float
  // The submitted step's shape until its collect_sampled (-1: none in flight).
  int64_t submitted_rows_ = -1;
  size_t submitted_raw_rows_ = 0;
  size_t kv_budget_bytes_ = 0;
  DeviceBuffer kv_cache_;
  std::vector<float> k_scales_, v_scales_;  // [L] FP8 KV cache scales
  KvCacheSpec kv_spec_;
};

}  // namespace mixserve::cuda
