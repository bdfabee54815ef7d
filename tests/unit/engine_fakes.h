// Test doubles for the engine: a backend whose logits depend on every token it reads back
// through the paged KV cache, and a tokenizer that maps each id to a fixed string.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/sampling_batch.h"
#include "tokenizer/tokenizer.h"

namespace mixserve::testing {

inline uint64_t fake_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Stores (token, position) per KV slot. The logits of a row hash the whole context read back
// through the block table, so a wrong block table, slot, cached block or recompute changes
// the output. Token 0 is EOS; its logit gets eos_bias.
class FakeBackend : public Backend {
 public:
  explicit FakeBackend(int32_t vocab = 64, float eos_bias = -1000.0f) : eos_bias_(eos_bias) {
    config_.vocab_size = vocab;
    config_.max_position_embeddings = 4096;
    config_.eos_token_ids = {0};
  }
  const ModelConfig& config() const override { return config_; }
  std::string name() const override { return "fake"; }
  size_t kv_bytes_per_token() const override { return 8; }
  void allocate_kv_cache(const KvCacheSpec& spec) override {
    spec_ = spec;
    kv_token_.assign(size_t(spec.num_blocks) * spec.block_size, -1);
    kv_pos_.assign(kv_token_.size(), -1);
  }
  KvCacheSpec kv_cache_spec() const override { return spec_; }

  void forward(const BatchPlan& plan, std::span<float> logits) override {
    plan.validate(spec_.block_size, spec_.num_blocks);
    const int32_t V = config_.vocab_size, bs = spec_.block_size, B = plan.max_blocks_per_seq;
    ASSERT_EQ(logits.size(), plan.logits_rows.size() * size_t(V));
    tokens_computed_ += plan.num_tokens();
    ++steps_;
    for (int32_t t = 0; t < plan.num_tokens(); ++t) {
      kv_token_[size_t(plan.slot_mapping[t])] = plan.token_ids[t];
      kv_pos_[size_t(plan.slot_mapping[t])] = plan.positions[t];
    }
    for (size_t r = 0; r < plan.logits_rows.size(); ++r) {
      const int32_t t = plan.logits_rows[r];
      int32_t s = 0;
      while (plan.seq_offsets[s + 1] <= t) ++s;
      uint64_t h = 12345;
      for (int32_t p = 0; p <= plan.positions[t]; ++p) {
        const int32_t block = plan.block_tables[size_t(s) * B + p / bs];
        const size_t slot = size_t(block) * bs + p % bs;
        ASSERT_EQ(kv_pos_[slot], p) << "KV slot " << slot << " does not hold position " << p;
        h = fake_mix(h ^ uint64_t(kv_token_[slot]));
      }
      for (int32_t v = 0; v < V; ++v)
        logits[r * V + v] = float(fake_mix(h ^ (uint64_t(v) << 32)) % 4096) / 256.0f;
      logits[r * V] += eos_bias_;
    }
  }

  int64_t tokens_computed() const { return tokens_computed_; }
  int64_t steps() const { return steps_; }

 private:
  ModelConfig config_;
  float eos_bias_;
  KvCacheSpec spec_;
  std::vector<int32_t> kv_token_, kv_pos_;
  int64_t tokens_computed_ = 0;
  int64_t steps_ = 0;
};

// The FakeBackend with "device" sampling: forward_and_sample picks greedily (ties to the lowest
// id) after applying the batch's penalty entries (suppressed ids to -inf; repetition /
// presence / frequency penalties as in sampler.h), so a SamplingBatch built from a wrong
// history changes the tokens. Rows must be greedy.
class FakeDeviceBackend : public FakeBackend {
 public:
  using FakeBackend::FakeBackend;
  bool supports_device_sampling() const override { return true; }
  void forward_and_sample(const BatchPlan& plan, const SamplingBatch& batch,
                          SampledTokens* out) override {
    const size_t R = plan.logits_rows.size(), V = size_t(config().vocab_size);
    ASSERT_EQ(batch.rows.size(), R);
    std::vector<float> logits(R * V);
    forward(plan, logits);
    out->ids.assign(R, 0);
    out->raw_logits.clear();
    for (size_t r = 0; r < R; ++r) {
      const SamplingRow& row = batch.rows[r];
      ASSERT_EQ(row.temperature, 0.0f) << "FakeDeviceBackend samples greedily only";
      float* l = logits.data() + r * V;
      if (row.logprobs >= 0) out->raw_logits.insert(out->raw_logits.end(), l, l + V);
      for (int32_t e = batch.entry_offsets[r]; e < batch.entry_offsets[r + 1]; ++e) {
        const PenaltyEntry& pe = batch.entries[size_t(e)];
        float& x = l[pe.id];
        if (pe.flags & PenaltyEntry::kInHistory)
          x = x > 0 ? x / row.repetition_penalty : x * row.repetition_penalty;
        x -= row.frequency_penalty * float(pe.output_count) +
             (pe.output_count > 0 ? row.presence_penalty : 0.0f);
        if (pe.flags & PenaltyEntry::kSuppressed) x = -1e30f;
      }
      out->ids[r] = int32_t(std::max_element(l, l + V) - l);
    }
    ++device_steps_;
  }
  int64_t device_steps() const { return device_steps_; }

 private:
  int64_t device_steps_ = 0;
};

// Id 0 is "</s>" (special, EOS); id i > 0 is two letters, so stop strings can span tokens.
class FakeTokenizer : public Tokenizer {
 public:
  explicit FakeTokenizer(int32_t vocab = 64) {
    for (int32_t i = 0; i < vocab; ++i) {
      pieces_.push_back(i == 0 ? std::string("</s>")
                               : std::string{char('a' + i % 26), char('a' + (i * 7 + 3) % 26)});
    }
  }
  std::vector<int32_t> encode(std::string_view, bool) const override { return {}; }
  std::string decode(std::span<const int32_t> ids, bool skip_special) const override {
    std::string out;
    for (int32_t id : ids)
      if (!(skip_special && is_special(id))) out += pieces_.at(size_t(id));
    return out;
  }
  int32_t vocab_size() const override { return int32_t(pieces_.size()); }
  int32_t bos_id() const override { return -1; }
  const std::vector<int32_t>& eos_ids() const override { return eos_; }
  bool is_special(int32_t id) const override { return id == 0; }
  std::string_view id_to_piece(int32_t id) const override { return pieces_.at(size_t(id)); }
  const std::string& chat_template() const override { return empty_; }
  const std::string& bos_token() const override { return empty_; }
  const std::string& eos_token() const override { return pieces_[0]; }

 private:
  std::vector<std::string> pieces_;
  std::vector<int32_t> eos_{0};
  std::string empty_;
};

// A prompt of `len` ids in [1, 64), varied by `salt`.
inline std::vector<int32_t> fake_prompt(int32_t len, uint64_t salt) {
  std::vector<int32_t> p;
  for (int32_t i = 0; i < len; ++i) p.push_back(1 + int32_t(fake_mix(salt * 1000 + i) % 63));
  return p;
}

}  // namespace mixserve::testing
