// CpuBackend: the plain float32 reference forward pass of Mixtral-family models. Every GPU kernel
// is checked against it, and it is checked against Hugging Face transformers (float32).
//
// KV cache layout: one float array [L, 2 (K, V), N, Hkv, D] with N = num_blocks * block_size
// slots; slot = block * block_size + offset, the value BatchPlan::slot_mapping holds.
//
// Determinism: every output element is computed by one thread, in a fixed order, from its own
// token's inputs only, so a sequence's logits are bit-identical whatever the thread count and
// whatever else shares the batch (prefill chunks, decode tokens).
//
// Sharded (tensor / expert parallelism, cpu_shard.h): the backend computes with the shard's
// local config (its heads, its F slice) and weights, keeps K/V of its KV heads only, and
// completes the attention output projection and the FFN output with an all-reduce over the
// ranks before adding them to the residual. Only rank 0 computes logits; other ranks leave
// logits_out untouched (it may be empty). The unsharded path is the reference and does not
// change with this.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_shard.h"
#include "backend/cpu/cpu_weights.h"

namespace mixserve {

class CpuBackend : public Backend {
 public:
  // num_threads: OpenMP threads per operation; 0 = all cores. Throws mixserve::Error when the
  // config is unusable or a weight has the wrong size. With a shard, `config` is the full
  // model's and `weights` the shard's (slice_cpu_weights / load_cpu_shard_weights).
  CpuBackend(const ModelConfig& config, CpuWeights weights, int num_threads,
             std::optional<CpuShard> shard = std::nullopt);
  // Reads config.json and the safetensors of a model folder (see cpu_backend_load.cpp); with a
  // shard, only the shard's slices of the weights.
  static std::unique_ptr<CpuBackend> load(const std::filesystem::path& model_dir, int num_threads,
                                          std::optional<CpuShard> shard = std::nullopt);

  const ModelConfig& config() const override { return config_; }
  std::string name() const override { return "cpu"; }
  size_t kv_bytes_per_token() const override;
  void allocate_kv_cache(const KvCacheSpec& spec) override;
  KvCacheSpec kv_cache_spec() const override { return kv_spec_; }
  void forward(const BatchPlan& plan, std::span<float> logits_out) override;

  int num_threads() const { return num_threads_; }
  const CpuWeights& weights() const { return weights_; }
  const std::optional<CpuShard>& shard() const { return shard_; }

 private:
  // K or V pool of one layer: [N, Hkv, D].
  float* kv_pool(int layer, int which);
  // Sharded: completes a [T, H] partial sum over the ranks. Unsharded: nothing to do.
  void reduce_partial(std::vector<float>& partial);
  bool computes_logits() const { return !shard_ || cpu_shard_has_lm_head(shard_->spec); }

  ModelConfig config_;  // the shard's local config when sharded
  std::optional<CpuShard> shard_;
  CpuWeights weights_;
  int num_threads_ = 1;
  std::vector<float> inv_freq_;  // [D/2] rotary frequencies
  KvCacheSpec kv_spec_;
  std::vector<float> kv_cache_;  // [L, 2, N, Hkv, D]
};

}  // namespace mixserve
