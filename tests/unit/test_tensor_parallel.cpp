// Tensor and expert parallelism of the CPU backend through DistributedBackend, ranks as threads:
// the logits of TP / EP groups match the unsharded reference (float32 sums in a different
// order: 1e-5 relative), greedy generation is identical, the engine runs on a group unchanged,
// and failures (sizes that do not divide, a rank that fails to build or dies mid-step) are
// errors, never hangs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_shard.h"
#include "cpu_test_support.h"
#include "dist/distributed_backend.h"
#include "dist/parallel_backend.h"
#include "engine/engine.h"
#include "util/error.h"

namespace mixserve {
namespace {

using cpu_test::PlanBuilder;

// Mixtral-shaped with 8 query heads over 2 KV heads: TP=4 replicates each KV head on 2 ranks.
ModelConfig heads8_config() {
  ModelConfig c = cpu_test::moe_config();
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 6;
  return c;
}

ModelConfig config_named(const std::string& name) {
  if (name == "moe") return cpu_test::moe_config();   // Hq 6, Hkv 2, F 40, E 4
  if (name == "heads8") return heads8_config();       // Hq 8, Hkv 2, F 40, E 4
  if (name == "dense") return cpu_test::dense_config();  // Hq 4 = Hkv, F 52, tied
  return cpu_test::mqa_config();                      // Hq 4, Hkv 1, F 28, E 5
}

std::unique_ptr<Backend> make_group(const ModelConfig& c, const CpuWeights& w, int n, bool ep) {
  return dist::make_thread_parallel_backend(
      c, {n, ep}, [&c, &w](const dist::ShardSpec& s, dist::Communicator& comm) {
        return std::make_unique<CpuBackend>(c, slice_cpu_weights(c, w, s), 1,
                                            CpuShard{s, &comm});
      });
}

std::vector<float> run(Backend& b, const BatchPlan& plan) {
  std::vector<float> logits(plan.logits_rows.size() * size_t(b.config().vocab_size));
  b.forward(plan, logits);
  return logits;
}

// max |a - b| / max(1, |b|)
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - b[i]) / std::max(1.0, std::abs(double(b[i]))));
  }
  return worst;
}

int argmax(const float* row, int V) { return int(std::max_element(row, row + V) - row); }

struct Case {
  std::string model;
  int n;
  bool ep;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.model + (info.param.ep ? "_EP" : "_TP") + std::to_string(info.param.n);
}

class ParallelMatchesReference : public ::testing::TestWithParam<Case> {};

TEST_P(ParallelMatchesReference, LogitsOfMixedPrefillAndDecodeSteps) {
  const Case k = GetParam();
  const ModelConfig c = config_named(k.model);
  const CpuWeights w = make_random_cpu_weights(c, 11);
  CpuBackend ref(c, w, 1);
  std::unique_ptr<Backend> group = make_group(c, w, k.n, k.ep);
  EXPECT_EQ(group->config().num_attention_heads, c.num_attention_heads);  // the full model
  // Per rank: the shard's KV heads only.
  const int local_kv = std::max(1, c.num_key_value_heads / k.n);
  EXPECT_EQ(group->kv_bytes_per_token(),
            ref.kv_bytes_per_token() / c.num_key_value_heads * local_kv);
  ref.allocate_kv_cache({64, 4});
  group->allocate_kv_cache({64, 4});

  PlanBuilder plans(4, 64, 5);
  const int V = c.vocab_size;
  plans.add(cpu_test::random_tokens(20, V, 1));
  plans.add(cpu_test::random_tokens(8, V, 2));
  plans.add(cpu_test::random_tokens(25, V, 3));
  const std::vector<std::vector<std::pair<int, int>>> steps = {
      {{0, 6}, {1, 5}},                      // two prefill chunks
      {{0, 5}, {1, 1}, {2, 9}},              // chunk, a decode-sized step, a new prompt
      {{0, 1}, {1, 1}, {2, 8}},              // decodes beside a chunk crossing blocks
      {{0, 1}, {1, 1}, {2, 1}},              // decode only
      {{2, 7}, {0, 1}},
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    const BatchPlan plan = plans.step(steps[i], /*all_logits=*/true);
    const std::vector<float> want = run(ref, plan), got = run(*group, plan);
    EXPECT_LE(max_rel(got, want), 1e-5) << "step " << i;
    // Sharding changes the order of sums, so exact equality everywhere would mean it did
    // nothing; but the argmax of each row must agree.
    for (size_t r = 0; r < plan.logits_rows.size(); ++r) {
      EXPECT_EQ(argmax(got.data() + r * V, V), argmax(want.data() + r * V, V));
    }
  }
}

// 24 greedy tokens, one decode step at a time, on both: the same tokens.
TEST_P(ParallelMatchesReference, GreedyGenerationIsIdentical) {
  const Case k = GetParam();
  const ModelConfig c = config_named(k.model);
  const CpuWeights w = make_random_cpu_weights(c, 23);
  CpuBackend ref(c, w, 1);
  std::unique_ptr<Backend> group = make_group(c, w, k.n, k.ep);
  const std::vector<int> prompt = cpu_test::random_tokens(9, c.vocab_size, 4);
  auto generate = [&](Backend& b) {
    b.allocate_kv_cache({16, 4});
    std::vector<int> tokens = prompt;
    int computed = 0;
    while (tokens.size() < prompt.size() + 24) {
      BatchPlan p;
      const int n = int(tokens.size()) - computed;
      for (int i = 0; i < n; ++i) {
        const int pos = computed + i;
        p.token_ids.push_back(tokens[pos]);
        p.positions.push_back(pos);
        p.slot_mapping.push_back(pos);  // blocks 0, 1, ... in order
      }
      p.seq_offsets = {0, n};
      p.context_lens = {int(tokens.size())};
      p.max_blocks_per_seq = 16;
      for (int b = 0; b < 16; ++b) p.block_tables.push_back(b);
      p.logits_rows = {n - 1};
      const std::vector<float> logits = run(b, p);
      computed = int(tokens.size());
      tokens.push_back(argmax(logits.data(), c.vocab_size));
    }
    return tokens;
  };
  EXPECT_EQ(generate(*group), generate(ref));
}

INSTANTIATE_TEST_SUITE_P(
    Cpu, ParallelMatchesReference,
    ::testing::Values(Case{"moe", 2, false}, Case{"moe", 2, true}, Case{"heads8", 4, false},
                      Case{"heads8", 4, true}, Case{"heads8", 2, true},
                      Case{"dense", 2, false}, Case{"dense", 4, false},
                      Case{"mqa", 2, false}, Case{"mqa", 4, false}),
    case_name);

Request greedy(std::string id, std::vector<int32_t> prompt, int32_t max_tokens) {
  Request r;
  r.id = std::move(id);
  r.prompt_ids = std::move(prompt);
  r.params.max_tokens = max_tokens;
  r.params.temperature = 0.0f;
  r.params.ignore_eos = true;
  return r;
}

// The engine (chunked prefill beside decodes, several requests) on a TP=2 group and on one
// backend: the same greedy tokens for every request.
TEST(TensorParallelEngine, SameTokensAsOneRank) {
  const ModelConfig c = cpu_test::moe_config();
  const CpuWeights w = make_random_cpu_weights(c, 7);
  auto run_engine = [&](std::unique_ptr<Backend> backend) {
    EngineConfig ec;
    ec.block_size = 4;
    ec.kv_cache_tokens = 512;
    ec.max_num_batched_tokens = 13;  // prompts arrive in chunks beside decode tokens
    ec.max_num_seqs = 8;
    ec.max_model_len = 128;
    Engine engine(std::move(backend), nullptr, ec);
    std::vector<std::shared_ptr<TokenStream>> streams;
    for (int i = 0; i < 4; ++i) {
      std::vector<int32_t> prompt;
      for (int t : cpu_test::random_tokens(5 + 9 * i, c.vocab_size, 40 + i)) {
        prompt.push_back(3 + t % (c.vocab_size - 3));
      }
      streams.push_back(engine.submit(greedy("r" + std::to_string(i), prompt, 24)));
    }
    std::vector<std::vector<int32_t>> out(streams.size());
    for (int step = 0; step < 2000; ++step) {
      engine.step();
      bool done = true;
      for (size_t i = 0; i < streams.size(); ++i) {
        while (auto ev = streams[i]->try_next()) {
          out[i].insert(out[i].end(), ev->token_ids.begin(), ev->token_ids.end());
        }
        done = done && streams[i]->finished();
      }
      if (done) break;
    }
    return out;
  };
  const auto want = run_engine(std::make_unique<CpuBackend>(c, w, 1));
  const auto got = run_engine(make_group(c, w, 2, false));
  ASSERT_EQ(want.size(), 4u);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(want[i].size(), 24u);
    EXPECT_EQ(got[i], want[i]) << "request " << i;
  }
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TensorParallelErrors, HeadsThatDoNotDivide) {
  const ModelConfig c = cpu_test::moe_config();  // 6 query heads
  const CpuWeights w = make_random_cpu_weights(c, 1);
  const std::string e = error_of([&] { make_group(c, w, 4, false); });
  EXPECT_NE(e.find("num_attention_heads (6) is not divisible by 4"), std::string::npos) << e;
}

TEST(TensorParallelErrors, RankThatFailsToBuild) {
  const ModelConfig c = cpu_test::moe_config();
  const CpuWeights w = make_random_cpu_weights(c, 1);
  const std::string e = error_of([&] {
    dist::make_thread_parallel_backend(
        c, {2, false}, [&](const dist::ShardSpec& s, dist::Communicator& comm) {
          if (s.rank == 1) throw_error("no weights for rank 1");
          return std::make_unique<CpuBackend>(c, slice_cpu_weights(c, w, s), 1,
                                              CpuShard{s, &comm});
        });
  });
  EXPECT_NE(e.find("rank 1: no weights for rank 1"), std::string::npos) << e;
  // And rank 0 failing lets the worker threads go (no hang in the destructor).
  const std::string e0 = error_of([&] {
    dist::make_thread_parallel_backend(
        c, {2, false}, [&](const dist::ShardSpec& s, dist::Communicator& comm) {
          if (s.rank == 0) throw_error("rank 0 has no disk");
          return std::make_unique<CpuBackend>(c, slice_cpu_weights(c, w, s), 1,
                                              CpuShard{s, &comm});
        });
  });
  EXPECT_NE(e0.find("rank 0: rank 0 has no disk"), std::string::npos) << e0;
}

// A shard that fails its forward once `fail` is set (a rank dying mid-step).
class FailingShard : public Backend {
 public:
  FailingShard(std::unique_ptr<Backend> inner, std::shared_ptr<std::atomic<bool>> fail)
      : inner_(std::move(inner)), fail_(std::move(fail)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  std::string name() const override { return "failing"; }
  size_t kv_bytes_per_token() const override { return inner_->kv_bytes_per_token(); }
  void allocate_kv_cache(const KvCacheSpec& s) override { inner_->allocate_kv_cache(s); }
  KvCacheSpec kv_cache_spec() const override { return inner_->kv_cache_spec(); }
  void forward(const BatchPlan& plan, std::span<float> logits) override {
    if (*fail_) throw_error("rank 1 lost its device");
    inner_->forward(plan, logits);
  }

 private:
  std::unique_ptr<Backend> inner_;
  std::shared_ptr<std::atomic<bool>> fail_;
};

TEST(TensorParallelErrors, WorkerDyingMidRunFailsRankZeroInsteadOfHanging) {
  const ModelConfig c = cpu_test::moe_config();
  const CpuWeights w = make_random_cpu_weights(c, 1);
  auto fail = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<Backend> group = dist::make_thread_parallel_backend(
      c, {2, false},
      [&](const dist::ShardSpec& s, dist::Communicator& comm) -> std::unique_ptr<Backend> {
        auto shard = std::make_unique<CpuBackend>(c, slice_cpu_weights(c, w, s), 1,
                                                  CpuShard{s, &comm});
        if (s.rank == 0) return shard;
        return std::make_unique<FailingShard>(std::move(shard), fail);
      });
  group->allocate_kv_cache({16, 4});
  PlanBuilder plans(4, 16, 1);
  plans.add(cpu_test::random_tokens(12, c.vocab_size, 9));
  EXPECT_EQ(run(*group, plans.step({{0, 6}}, false)).size(), size_t(c.vocab_size));
  *fail = true;
  const BatchPlan next = plans.step({{0, 6}}, false);
  const std::string e = error_of([&] { run(*group, next); });
  EXPECT_NE(e.find("rank 1: rank 1 lost its device"), std::string::npos) << e;
  const std::string again = error_of([&] { run(*group, next); });
  EXPECT_NE(again.find("a rank failed earlier"), std::string::npos) << again;
  group.reset();  // joins the finished worker; must not hang
}

TEST(TensorParallelErrors, BadPlanIsRejectedBeforeTheWorkersSeeIt) {
  const ModelConfig c = cpu_test::moe_config();
  const CpuWeights w = make_random_cpu_weights(c, 1);
  std::unique_ptr<Backend> group = make_group(c, w, 2, false);
  group->allocate_kv_cache({16, 4});
  PlanBuilder plans(4, 16, 1);
  plans.add(cpu_test::random_tokens(6, c.vocab_size, 9));
  BatchPlan bad = plans.step({{0, 6}}, false);
  bad.token_ids[2] = c.vocab_size;  // outside the vocabulary
  EXPECT_NE(error_of([&] { run(*group, bad); }).find("outside the vocabulary"),
            std::string::npos);
  // The group is still usable: the error happened before any rank started the step.
  bad.token_ids[2] = 1;
  EXPECT_EQ(run(*group, bad).size(), size_t(c.vocab_size));
}

}  // namespace
}  // namespace mixserve
