// make_shard / local_config on Mixtral 8x7B's shapes and on the awkward cases: KV heads
// replicated over ranks, sizes that do not divide, dense models under --expert-parallel.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dist/sharding.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

// Mixtral-8x7B: Hq 32, Hkv 8, D 128, F 14336, E 8 top-2.
ModelConfig mixtral() {
  ModelConfig c;
  c.model_type = "mixtral";
  c.moe = true;
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.num_local_experts = 8;
  c.num_experts_per_tok = 2;
  return c;
}

ModelConfig dense() {
  ModelConfig c = mixtral();
  c.model_type = "mistral";
  c.moe = false;
  c.num_local_experts = 1;
  c.num_experts_per_tok = 1;
  return c;
}

std::string error_of(const ModelConfig& c, ParallelConfig p, int rank = 0) {
  try {
    make_shard(c, p, rank);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class MixtralTp : public ::testing::TestWithParam<int> {};

TEST_P(MixtralTp, RanksTileHeadsAndFfnExactly) {
  const int N = GetParam();
  const ModelConfig c = mixtral();
  std::vector<int> q_owner(32, -1), kv_owner(8, -1), f_owner(14336, -1);
  for (int r = 0; r < N; ++r) {
    const ShardSpec s = make_shard(c, {N, false}, r);
    EXPECT_EQ(s.rank, r);
    EXPECT_EQ(s.size, N);
    EXPECT_FALSE(s.expert_parallel);
    EXPECT_EQ(s.num_q_heads, 32 / N);
    EXPECT_EQ(s.num_kv_heads, 8 / N);
    EXPECT_EQ(s.ffn_size, 14336 / N);
    EXPECT_EQ(s.expert_begin, 0);
    EXPECT_EQ(s.num_experts, 8);
    for (int h = s.q_head_begin; h < s.q_head_begin + s.num_q_heads; ++h) q_owner[h] = r;
    for (int h = s.kv_head_begin; h < s.kv_head_begin + s.num_kv_heads; ++h) kv_owner[h] = r;
    for (int f = s.ffn_begin; f < s.ffn_begin + s.ffn_size; ++f) f_owner[f] = r;
    // Every local query head's KV head (global h / 4) is local.
    for (int h = s.q_head_begin; h < s.q_head_begin + s.num_q_heads; ++h) {
      EXPECT_GE(h / 4, s.kv_head_begin);
      EXPECT_LT(h / 4, s.kv_head_begin + s.num_kv_heads);
    }
    const ModelConfig lc = s.local_config(c);
    EXPECT_EQ(lc.num_attention_heads, 32 / N);
    EXPECT_EQ(lc.num_key_value_heads, 8 / N);
    EXPECT_EQ(lc.intermediate_size, 14336 / N);
    EXPECT_EQ(lc.head_dim, 128);
    EXPECT_EQ(lc.hidden_size, 4096);
    EXPECT_EQ(lc.num_local_experts, 8);
    EXPECT_EQ(lc.vocab_size, 32000);
  }
  // Contiguous ranges in rank order, nothing missed, nothing held twice.
  for (int h = 0; h < 32; ++h) EXPECT_EQ(q_owner[h], h / (32 / N));
  for (int h = 0; h < 8; ++h) EXPECT_EQ(kv_owner[h], h / (8 / N));
  for (int f = 0; f < 14336; ++f) ASSERT_EQ(f_owner[f], f / (14336 / N));
}

TEST_P(MixtralTp, ExpertParallelGivesWholeExperts) {
  const int N = GetParam();
  const ModelConfig c = mixtral();
  std::vector<int> owner(8, -1);
  for (int r = 0; r < N; ++r) {
    const ShardSpec s = make_shard(c, {N, true}, r);
    EXPECT_TRUE(s.expert_parallel);
    EXPECT_EQ(s.num_q_heads, 32 / N);  // attention is split as under TP
    EXPECT_EQ(s.num_kv_heads, 8 / N);
    EXPECT_EQ(s.ffn_begin, 0);
    EXPECT_EQ(s.ffn_size, 14336);
    EXPECT_EQ(s.num_experts, 8 / N);
    for (int e = s.expert_begin; e < s.expert_begin + s.num_experts; ++e) owner[e] = r;
    const ModelConfig lc = s.local_config(c);
    EXPECT_EQ(lc.intermediate_size, 14336);
    EXPECT_EQ(lc.num_local_experts, 8);  // the router stays full
  }
  for (int e = 0; e < 8; ++e) EXPECT_EQ(owner[e], e / (8 / N));
}

INSTANTIATE_TEST_SUITE_P(Sizes, MixtralTp, ::testing::Values(1, 2, 4, 8));

TEST(Sharding, FewerKvHeadsThanRanksReplicates) {
  ModelConfig c = mixtral();  // Hq 32, Hkv 8, N 16: each KV head on 2 ranks
  for (int r = 0; r < 16; ++r) {
    const ShardSpec s = make_shard(c, {16, false}, r);
    EXPECT_EQ(s.num_q_heads, 2);
    EXPECT_EQ(s.q_head_begin, 2 * r);
    EXPECT_EQ(s.num_kv_heads, 1);
    EXPECT_EQ(s.kv_head_begin, r / 2);
    EXPECT_EQ(s.local_config(c).num_key_value_heads, 1);
  }
  // Multi-query (Hkv 1): every rank holds the one KV head.
  c.num_key_value_heads = 1;
  for (int r = 0; r < 4; ++r) {
    const ShardSpec s = make_shard(c, {4, false}, r);
    EXPECT_EQ(s.kv_head_begin, 0);
    EXPECT_EQ(s.num_kv_heads, 1);
    EXPECT_EQ(s.q_head_begin, 8 * r);
  }
}

TEST(Sharding, SizesThatDoNotDivideAreErrors) {
  EXPECT_NE(error_of(mixtral(), {3, false}).find("num_attention_heads (32) is not divisible by 3"),
            std::string::npos);
  ModelConfig c = mixtral();
  c.num_attention_heads = 24;  // Hq 24 / N 6 ok, Hkv 8 vs 6: neither divides
  EXPECT_NE(error_of(c, {6, false}).find("num_key_value_heads (8)"), std::string::npos);
  c = mixtral();
  c.intermediate_size = 14335;
  EXPECT_NE(error_of(c, {2, false}).find("intermediate_size (14335)"), std::string::npos);
  // Expert parallelism does not cut F, so an odd F is fine there...
  EXPECT_EQ(error_of(c, {2, true}), "");
  // ...but the experts must divide.
  c = mixtral();
  c.num_attention_heads = 48;
  c.num_key_value_heads = 16;
  EXPECT_NE(error_of(c, {16, true}).find("num_local_experts (8) is not divisible by 16"),
            std::string::npos);
  EXPECT_NE(error_of(mixtral(), {0, false}).find("at least 1"), std::string::npos);
  EXPECT_NE(error_of(mixtral(), {2, false}, 2).find("rank 2 is outside [0, 2)"),
            std::string::npos);
  EXPECT_NE(error_of(mixtral(), {2, false}, -1).find("outside"), std::string::npos);
}

TEST(Sharding, DenseModels) {
  const ModelConfig c = dense();
  // TP splits the one MLP by its rows.
  const ShardSpec s = make_shard(c, {4, false}, 3);
  EXPECT_EQ(s.num_experts, 1);
  EXPECT_EQ(s.expert_begin, 0);
  EXPECT_EQ(s.ffn_begin, 3 * 14336 / 4);
  EXPECT_EQ(s.ffn_size, 14336 / 4);
  EXPECT_EQ(s.local_config(c).intermediate_size, 14336 / 4);
  EXPECT_FALSE(s.local_config(c).moe);
  // EP has no experts to place: an error that says what to do.
  const std::string e = error_of(c, {2, true});
  EXPECT_NE(e.find("dense model"), std::string::npos) << e;
  EXPECT_NE(e.find("drop --expert-parallel"), std::string::npos) << e;
}

TEST(Sharding, SizeOneIsTheWholeModel) {
  const ModelConfig c = mixtral();
  const ShardSpec s = make_shard(c, {1, false}, 0);
  EXPECT_EQ(s.q_head_begin, 0);
  EXPECT_EQ(s.num_q_heads, 32);
  EXPECT_EQ(s.num_kv_heads, 8);
  EXPECT_EQ(s.ffn_size, 14336);
  const ModelConfig lc = s.local_config(c);
  EXPECT_EQ(lc.to_json_text(), c.to_json_text());
}

TEST(Sharding, LocalConfigDerivesMissingHeadDim) {
  ModelConfig c = mixtral();
  c.head_dim = 0;
  const ShardSpec s = make_shard(c, {2, false}, 1);
  EXPECT_EQ(s.local_config(c).head_dim, 128);  // H / Hq of the full model, not of the shard
}

}  // namespace
}  // namespace mixserve::dist
