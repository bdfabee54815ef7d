// CudaBackend: construction, weights, workspace, KV cache sizing and the per-step plan upload.
// The forward pass itself is in cuda_forward.cpp.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kv_layout.h"
#include "backend/cuda/moe_padded_fp8.h"
#include "model/loader.h"
#include "model/safetensors.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::cuda {
namespace {

constexpr int kReportBlockSize = 16;  // kv_cache_spec()'s unit before allocation

double gib(size_t bytes) { return static_cast<double>(bytes) / double(1 << 30); }

size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

void check_config(const ModelConfig& c, bool fp8) {
  if (fp8) {
    const int64_t q = int64_t{c.num_attention_heads} * c.head_dim;
    MIXSERVE_CHECK(c.hidden_size % 16 == 0 && c.intermediate_size % 16 == 0 && q % 16 == 0,
                   "--quantization fp8: hidden_size (", c.hidden_size, "), intermediate_size (",
                   c.intermediate_size, ") and num_attention_heads * head_dim (", q,
                   ") must be multiples of 16 (cuBLASLt FP8 GEMMs)");
  }
  MIXSERVE_CHECK(c.num_attention_heads > 0 && c.num_key_value_heads > 0 &&
                     c.num_attention_heads % c.num_key_value_heads == 0 &&
                     c.num_attention_heads / c.num_key_value_heads <= 32,
                 "CUDA backend: num_attention_heads (", c.num_attention_heads,
                 ") must be a multiple of num_key_value_heads (", c.num_key_value_heads,
                 "), at most 32 times it");
  MIXSERVE_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0 && c.head_dim <= 256,
                 "CUDA backend: head_dim (", c.head_dim, ") must be even and at most 256");
  if (c.moe) {
    MIXSERVE_CHECK(c.num_local_experts <= 64 && c.num_experts_per_tok <= 16 &&
                       c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.num_local_experts,
                   "CUDA backend: at most 64 experts and top-k between 1 and min(16, experts) "
                   "(got ",
                   c.num_local_experts, " experts, top-k ", c.num_experts_per_tok, ")");
  }
}

ModelConfig computed_config(const ModelConfig& full, const dist::ShardSpec& shard) {
  return shard.size > 1 ? shard.local_config(full) : full;
}

}  // namespace

CudaBackend::CudaBackend(const ModelConfig& config, const CudaBackendOptions& options)
    : config_(computed_config(config, options.shard)),
      options_(options),
      weights_(config, options.dtype, options.fp8, options.shard) {
  check_config(config_, options.fp8);
  check_shard();
  MIXSERVE_CHECK(options.gpu_memory_fraction > 0.0 && options.gpu_memory_fraction <= 1.0,
                 "--gpu-memory-fraction must be in (0, 1], got ", options.gpu_memory_fraction);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    throw_error("--device cuda: no CUDA device found (use --device cpu)");
  }
  MIXSERVE_CHECK(options.device >= 0 && options.device < count, "CUDA device ", options.device,
                 " does not exist (", count, " found)");
  MIXSERVE_CUDA_CHECK(cudaSetDevice(options.device));
  cudaDeviceProp prop{};
  MIXSERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, options.device));
  name_ = "cuda:" + std::to_string(options.device) + " (" + prop.name + ", " +
          std::string(dtype_name(options.dtype)) + (options.fp8 ? ", fp8 W8A8" : "") +
          (options.kv_fp8 ? ", fp8 KV" : "") + shard_label() + ")";
  MIXSERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  gemm_ = std::make_unique<CublasLtGemm>(size_t{32} << 20, CublasLtGemm::kMaxLanes);
  for (int i = 0; i < CublasLtGemm::kMaxLanes; ++i) {
    if (i > 0) MIXSERVE_CUDA_CHECK(cudaStreamCreateWithFlags(&lanes_[i], cudaStreamNonBlocking));
    MIXSERVE_CUDA_CHECK(cudaEventCreateWithFlags(&lane_events_[i], cudaEventDisableTiming));
  }
  MIXSERVE_CUDA_CHECK(cudaEventCreateWithFlags(&counts_copied_, cudaEventDisableTiming));
  if (const char* env = std::getenv("MIXSERVE_MOE_LANES"); env != nullptr && *env != '\0') {
    const int n = std::atoi(env);
    MIXSERVE_CHECK(n >= 1 && n <= CublasLtGemm::kMaxLanes, "MIXSERVE_MOE_LANES=", env,
                   ": expected 1 to ", CublasLtGemm::kMaxLanes);
    max_moe_lanes_ = n;
  }
  if (const char* env = std::getenv("MIXSERVE_COMM_TIMING");
      env != nullptr && std::string(env) == "1" && options.shard.size > 1) {
    comm_timer_.enable();
  }
  if (const char* env = std::getenv("MIXSERVE_SYNC_TIMING");
      env != nullptr && std::string(env) == "1") {
    sync_timer_.enable();
  }
  if (const char* env = std::getenv("MIXSERVE_FP8_UNSCALED"); env != nullptr) {
    moe_fp8_unscaled_ = std::string(env) != "0";
  }
  if (const char* env = std::getenv("MIXSERVE_FP8_COUNTED"); env != nullptr && *env != '\0') {
    options_.moe_counted_max_padding = std::string(env) == "0" ? 0.0 : std::atof(env);
  }
  if (const char* env = std::getenv("MIXSERVE_MOE_TIERS"); env != nullptr && *env != '\0') {
    options_.moe_counted_tiers = std::clamp(std::atoi(env), 1, kMaxCountedTiers);
  }
  if (const char* env = std::getenv("MIXSERVE_MOE_TIER_GAIN"); env != nullptr && *env != '\0') {
    options_.moe_counted_tier_min_gain = std::atof(env);
  }
  if (const char* env = std::getenv("MIXSERVE_MOE_TIER_ALIGN"); env != nullptr && *env != '\0') {
    options_.moe_counted_tier_align = std::max(0, std::atoi(env));
  }
  if (const char* env = std::getenv("MIXSERVE_MOE_TIER_FLOOR"); env != nullptr && *env != '\0') {
    options_.moe_counted_tier_floor_rows = std::max(0, std::atoi(env));
  }
  if (const char* env = std::getenv("MIXSERVE_FP8_UNSCALED_ATTN"); env != nullptr && *env != '\0') {
    options_.fp8_unscaled_attn_min_tokens = std::max(0, std::atoi(env));
  }
  if (const char* env = std::getenv("MIXSERVE_MOE_TIER_STREAMS"); env != nullptr && *env != '\0') {
    options_.moe_counted_tier_streams = std::clamp(std::atoi(env), 0, 1);
  }
  if (const char* env = std::getenv("MIXSERVE_GEMM_PRETUNE"); env != nullptr && *env != '\0') {
    options_.gemm_pretune = std::string(env) != "0";
  }
  if (const char* env = std::getenv("MIXSERVE_MOE_PRESYNC"); env != nullptr && *env != '\0') {
    options_.moe_presync_group = std::string(env) != "0";
  }
  if (const char* env = std::getenv("MIXSERVE_MOE_TIER_W2"); env != nullptr && *env != '\0') {
    options_.moe_counted_tier_w2 = std::string(env) != "0";
  }
  if (const char* env = std::getenv("MIXSERVE_FP8_FUSED_COMBINE"); env != nullptr) {
    fused_combine_ = std::string(env) != "0";
  }
  if (const char* env = std::getenv("MIXSERVE_FP8_GROUPED"); env != nullptr) {
    fp8_grouped_forced_ = env;
  }
  batched_ = std::make_unique<CublasBatched>();
  // One GEMM workspace for each counted MoE tier that may run at once (on the lanes' streams).
  static_assert(kMaxCountedTiers <= CublasLtGemm::kMaxLanes);
  if (options.fp8) {
    batched_fp8_ = std::make_unique<CublasLtBatchedFp8>(size_t{32} << 20, kMaxCountedTiers);
  }
  // group_expert, group_count, expert_group; the [6, G] pointers; the pre-sync layout {G, C}.
  moe_groups_.reset(3 * kMaxExperts * sizeof(int32_t) + 6 * kMaxExperts * sizeof(void*) +
                    2 * sizeof(int32_t));

  size_t free_b = 0, total_b = 0;
  MIXSERVE_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  MIXSERVE_CHECK(weights_.bytes() < free_b, "CUDA backend: the weights need ",
                 gib(weights_.bytes()), " GiB but ", prop.name, " has ", gib(free_b),
                 " GiB free (use fewer layers, e.g. synthetic:PRESET?layers=N, or a larger GPU)");
  const std::vector<float> inv = cpu::rope_inv_freq(config_.head_dim, config_.rope_theta);
  inv_freq_.reset(inv.size() * sizeof(float));
  MIXSERVE_CUDA_CHECK(
      cudaMemcpy(inv_freq_.get(), inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice));
  counts_host_.reset(sizeof(int32_t) * std::max(1, config_.num_local_experts));
  k_scales_.assign(config_.num_hidden_layers, 1.0f);
  v_scales_.assign(config_.num_hidden_layers, 1.0f);
}

void CudaBackend::load_kv_scales(const Checkpoint& ckpt) {
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".self_attn.";
    for (auto [name, dst] : {std::pair{"k_scale", &k_scales_[l]}, {"v_scale", &v_scales_[l]}}) {
      const TensorView* t = ckpt.find(prefix + name);
      if (t == nullptr) continue;
      MIXSERVE_CHECK(t->numel() == 1, t->file.string(), ": tensor ", t->name,
                     " must hold one value (a per-tensor KV cache scale)");
      float v = 0;
      t->to_float(&v);
      MIXSERVE_CHECK(std::isfinite(v) && v > 0.0f, t->file.string(), ": tensor ", t->name,
                     " holds ", v, "; KV cache scales must be finite and positive");
      *dst = v;
    }
  }
}

CudaBackend::~CudaBackend() {
  (void)cudaSetDevice(options_.device);  // free on this backend's device, whatever the thread
  for (IntervalTimer* t : {&comm_timer_, &sync_timer_}) {
    if (!t->enabled()) continue;
    try {
      log::info("rank ", options_.shard.rank, " of ", options_.shard.size, ": ", t->summary());
    } catch (const std::exception& e) {
      log::warn("interval timing: ", e.what());
    }
  }
  for (cudaEvent_t e : lane_events_) {
    if (e) cudaEventDestroy(e);
  }
  if (counts_copied_) cudaEventDestroy(counts_copied_);
  for (cudaStream_t l : lanes_) {
    if (l) cudaStreamDestroy(l);
  }
  if (stream_) cudaStreamDestroy(stream_);
}

std::unique_ptr<CudaBackend> CudaBackend::load(const std::filesystem::path& model_dir,
                                               const CudaBackendOptions& options) {
  ModelFiles files = open_model_dir(model_dir);
  CudaBackendOptions o = options;
  o.fp8 = o.fp8 || files.config.fp8;  // an FP8 checkpoint runs in FP8
  if (files.config.fp8 && files.config.fp8_activation_scheme == "static") {
    log::warn(model_dir.string(),
              ": activation_scheme \"static\": the checkpoint's input_scale "
              "tensors are not used; activations are quantized with dynamic per-token scales");
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(files.config, o));
  b->weights_.load(*files.checkpoint);
  if (o.kv_fp8) b->load_kv_scales(*files.checkpoint);
  b->finish_setup();
  return b;
}

std::unique_ptr<CudaBackend> CudaBackend::synthetic(const ModelConfig& config, uint64_t seed,
                                                    const CudaBackendOptions& options) {
  std::unique_ptr<CudaBackend> b(new CudaBackend(config, options));
  b->weights_.make_synthetic(seed, b->stream_);
  b->finish_setup();
  return b;
}

void CudaBackend::finish_setup() {
  const int tokens = std::max(1, options_.max_num_tokens);
  ensure_workspace(tokens, options_.max_num_seqs > 0 ? std::min(tokens, options_.max_num_seqs)
                                                     : tokens);
  attn_workspace_.reset(kAttentionWorkspaceBytes);
  size_t free_b = 0, total_b = 0;
  MIXSERVE_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  // What this process may still take: the fraction of the card, minus what is in use already
  // (by us and by anyone else), with some room kept for cuBLASLt's and the runtime's own needs.
  const double allowed = options_.gpu_memory_fraction * static_cast<double>(total_b) -
                         static_cast<double>(total_b - free_b);
  const double reserve = 256.0 * (1 << 20);
  kv_budget_bytes_ = allowed > reserve ? static_cast<size_t>(allowed - reserve) : 0;
  MIXSERVE_CHECK(kv_budget_bytes_ >= kv_bytes_per_token() * kReportBlockSize,
                 "CUDA backend: no memory left for the KV cache after ", gib(weights_.bytes()),
                 " GiB of weights (", gib(total_b - free_b), " GiB in use of ", gib(total_b),
                 "); raise --gpu-memory-fraction or use a smaller model");
  log::info("CUDA memory: weights ", gib(weights_.bytes()), " GiB, workspace ",
            gib(workspace_buf_.bytes()), " GiB, KV budget ", gib(kv_budget_bytes_),
            " GiB = ", kv_budget_bytes_ / kv_bytes_per_token(), " tokens");
  if (options_.gemm_pretune) pretune_counted_moe();
}

size_t CudaBackend::kv_bytes_per_token() const {
  return size_t(config_.num_hidden_layers) * 2 * config_.num_key_value_heads * config_.head_dim *
         kv_element_bytes();
}

KvCacheSpec CudaBackend::kv_cache_spec() const {
  if (kv_cache_.get() != nullptr) return kv_spec_;
  // Capped at 2^24 tokens: a tiny model would otherwise be offered hundreds of millions of
  // slots (a real Mixtral fits ~0.5M on an 80 GB card, far below the cap).
  const size_t blocks = std::min(kv_budget_bytes_ / (kv_bytes_per_token() * kReportBlockSize),
                                 (size_t{1} << 24) / kReportBlockSize);
  return {static_cast<int32_t>(blocks), kReportBlockSize};
}

void CudaBackend::allocate_kv_cache(const KvCacheSpec& spec) {
  MIXSERVE_CHECK(spec.num_blocks > 0 && spec.block_size > 0,
                 "CUDA backend: KV cache needs "
                 "num_blocks > 0 and block_size > 0 (got ",
                 spec.num_blocks, " and ", spec.block_size, ")");
  // Pools of whole 16-slot tiles (kv_layout.h).
  const size_t bytes =
      size_t(kv_pool_slots(int64_t{spec.num_blocks} * spec.block_size)) * kv_bytes_per_token();
  MIXSERVE_CUDA_CHECK(cudaSetDevice(options_.device));
  graphs_.clear();  // they hold pointers into the cache
  kv_cache_.release();
  try {
    kv_cache_.reset(bytes);
  } catch (const Error&) {
    throw_error("CUDA backend: a KV cache of ", int64_t{spec.num_blocks} * spec.block_size,
                " tokens needs ", gib(bytes),
                " GiB, more than the GPU has free (the budget "
                "was ",
                gib(kv_budget_bytes_), " GiB); lower --kv-cache-tokens");
  }
  kv_spec_ = spec;
}

void* CudaBackend::kv_pool(int layer, int which) const {
  const size_t pool = size_t(kv_pool_slots(int64_t{kv_spec_.num_blocks} * kv_spec_.block_size)) *
                      config_.num_key_value_heads * config_.head_dim * kv_element_bytes();
  return kv_cache_.as<char>((size_t(layer) * 2 + which) * pool);
}

void CudaBackend::ensure_workspace(int T, int R) {
  if (T <= ws_tokens_ && R <= ws_logits_rows_) return;
  T = std::max(T, ws_tokens_);
  R = std::min(T, std::max(R, ws_logits_rows_));
  const ModelConfig& c = config_;
  const size_t H = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const size_t E = std::max(1, c.num_local_experts);
  const size_t K = c.moe ? c.num_experts_per_tok : 1;
  const size_t D = c.head_dim, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  const size_t el = dtype_size(options_.dtype), t = size_t(T);
  // Rows of the MoE's per-pair buffers: T*K, and under FP8 room for the counted grouped layout's
  // padding (moe_counted_fp8: up to moe_counted_max_padding x the pairs, at most 2x here).
  size_t moe_rows = t * K;
  if (options_.fp8 && c.moe && options_.moe_counted_max_padding > 0.0) {
    const double pad = std::min(2.0, std::max(1.0, options_.moe_counted_max_padding));
    moe_rows = size_t(std::ceil(double(t * K) * pad)) + E * kCountedRowAlign;
  }
  size_t offset = 0;
  std::vector<std::pair<void**, size_t>> parts = {
      {reinterpret_cast<void**>(&ws_.x), t * H * 4},
      {reinterpret_cast<void**>(&ws_.delta), t * H * 4},
      {&ws_.h, t * H * el},
      {&ws_.qkv, t * (Hq + 2 * Hkv) * D * el},
      {&ws_.attn, t * Hq * D * el},
      {reinterpret_cast<void**>(&ws_.router_logits), t * E * 4},
      {reinterpret_cast<void**>(&ws_.experts), t * K * 4},
      {reinterpret_cast<void**>(&ws_.expert_weights), t * K * 4},
      {reinterpret_cast<void**>(&ws_.counts), E * 4},
      {reinterpret_cast<void**>(&ws_.offsets), (E + 1) * 4},
      {reinterpret_cast<void**>(&ws_.sorted_token), t * K * 4},
      {reinterpret_cast<void**>(&ws_.pair_pos), t * K * 4},
      // The half-precision MoE's gathered inputs and activations; FP8 uses gathered_q, act_q.
      {&ws_.gathered, options_.fp8 ? 0 : t * K * H * el},
      {&ws_.gate_up, moe_rows * 2 * F * el},
      {&ws_.act, options_.fp8 ? 0 : t * K * F * el},
      {reinterpret_cast<void**>(&ws_.expert_out), moe_rows * H * 4},
      {&ws_.final_rows, t * H * el},
      {reinterpret_cast<void**>(&ws_.logits), size_t(R) * V * 4},
  };
  if (options_.shard.size > 1 && options_.tp_reduce_bf16) {
    parts.push_back({&ws_.delta_bf16, t * H * 2});
  }
  if (options_.fp8) {
    const std::vector<std::pair<void**, size_t>> q = {
        {reinterpret_cast<void**>(&ws_.h_q), t * H},
        {reinterpret_cast<void**>(&ws_.h_scale), t * 4},
        {reinterpret_cast<void**>(&ws_.attn_q), t * Hq * D},
        {reinterpret_cast<void**>(&ws_.attn_scale), t * 4},
        {reinterpret_cast<void**>(&ws_.gathered_q), moe_rows * H},
        {reinterpret_cast<void**>(&ws_.gathered_scale), (moe_rows + 3 * E) * 4},
        {reinterpret_cast<void**>(&ws_.act_q), moe_rows * F},
        {reinterpret_cast<void**>(&ws_.act_scale), (moe_rows + 3 * E) * 4},
    };
    parts.insert(parts.end(), q.begin(), q.end());
  }
  std::vector<size_t> offsets;
  for (const auto& [ptr, bytes] : parts) {
    offsets.push_back(offset);
    offset += align_up(bytes);
  }
  MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  graphs_.clear();  // they hold pointers into the workspace
  workspace_buf_.reset(offset);
  for (size_t i = 0; i < parts.size(); ++i) {
    *parts[i].first = workspace_buf_.as<char>(offsets[i]);
  }
  ws_tokens_ = T;
  ws_logits_rows_ = R;
  ws_moe_rows_ = moe_rows;
}

void CudaBackend::upload_plan(const BatchPlan& plan) {
  const size_t T = plan.num_tokens(), S = plan.num_seqs();
  const size_t R = plan.logits_rows.size();
  const size_t SB = S * size_t(plan.max_blocks_per_seq);
  // int32 arrays first, then the int64 slots at an 8-byte boundary.
  const size_t ints = 3 * T + SB + R + S + 1;
  const size_t slots_at = (ints * 4 + 7) / 8 * 8;
  const size_t bytes = slots_at + T * 8;
  if (plan_host_.bytes() < bytes) {
    MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    plan_host_.reset(bytes * 2);
    plan_dev_.reset(bytes * 2);
  }
  int32_t* h = plan_host_.as<int32_t>();
  std::memcpy(h, plan.token_ids.data(), T * 4);
  std::memcpy(h + T, plan.positions.data(), T * 4);
  for (size_t s = 0; s < S; ++s) {
    for (int32_t t = plan.seq_offsets[s]; t < plan.seq_offsets[s + 1]; ++t) {
      h[2 * T + t] = static_cast<int32_t>(s);
    }
  }
  std::memcpy(h + 3 * T, plan.block_tables.data(), SB * 4);
  std::memcpy(h + 3 * T + SB, plan.logits_rows.data(), R * 4);
  std::memcpy(h + 3 * T + SB + R, plan.seq_offsets.data(), (S + 1) * 4);
  std::memcpy(plan_host_.as<char>(slots_at), plan.slot_mapping.data(), T * 8);
  MIXSERVE_CUDA_CHECK(
      cudaMemcpyAsync(plan_dev_.get(), plan_host_.get(), bytes, cudaMemcpyHostToDevice, stream_));
  int32_t* d = plan_dev_.as<int32_t>();
  plan_ = {d,      d + T, d + 2 * T, d + 3 * T, d + 3 * T + SB, plan_dev_.as<int64_t>(slots_at),
           d + 3 * T + SB + R};
}

}  // namespace mixserve::cuda
