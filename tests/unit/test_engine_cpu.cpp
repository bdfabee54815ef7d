// The engine over the real fp32 CPU backend (random small Mixtral weights): a request's greedy
// tokens must not depend on what else is batched with it, on the prefill chunk size, on prefix
// reuse, or on being preempted and recomputed. The CPU backend is bit-deterministic per
// sequence, so the comparison is exact.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_weights.h"
#include "cpu_test_support.h"
#include "engine/engine.h"

namespace mixserve {
namespace {

std::unique_ptr<Engine> make_engine(int32_t cache_tokens, int32_t budget, bool async = false) {
  const ModelConfig config = cpu_test::moe_config();
  auto backend = std::make_unique<CpuBackend>(config, make_random_cpu_weights(config, 7), 1);
  EngineConfig ec;
  ec.block_size = 4;
  ec.kv_cache_tokens = cache_tokens;
  ec.max_num_batched_tokens = budget;
  ec.max_num_seqs = 32;
  ec.max_model_len = 256;
  ec.async_scheduling = async;
  return std::make_unique<Engine>(std::move(backend), nullptr, ec);
}

Request greedy(std::string id, std::vector<int32_t> prompt, int32_t max_tokens) {
  Request r;
  r.id = std::move(id);
  r.prompt_ids = std::move(prompt);
  r.params.max_tokens = max_tokens;
  r.params.temperature = 0.0f;
  r.params.ignore_eos = true;
  return r;
}

std::vector<int32_t> prompt_of(int n, uint64_t seed) {
  std::vector<int32_t> p;
  for (int t : cpu_test::random_tokens(n, 97, seed)) p.push_back(3 + t % 94);  // no special ids
  return p;
}

// Submits request i before step arrival[i]; steps until every stream finished.
std::vector<std::vector<int32_t>> run(Engine& engine, const std::vector<Request>& reqs,
                                      const std::vector<int>& arrival) {
  std::vector<std::vector<int32_t>> out(reqs.size());
  std::vector<std::shared_ptr<TokenStream>> streams(reqs.size());
  for (int step = 0; step < 20000; ++step) {
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (arrival[i] == step) streams[i] = engine.submit(reqs[i]);
    }
    engine.step();
    bool done = true;
    for (size_t i = 0; i < reqs.size(); ++i) {
      if (!streams[i]) {
        done = false;
        continue;
      }
      while (auto ev = streams[i]->try_next()) {
        out[i].insert(out[i].end(), ev->token_ids.begin(), ev->token_ids.end());
      }
      done = done && streams[i]->finished();
    }
    if (done) return out;
  }
  ADD_FAILURE() << "engine did not finish";
  return out;
}

TEST(EngineOnCpuBackend, GreedyTokensIndependentOfBatchChunkingAndPreemption) {
  const Request target = greedy("target", prompt_of(23, 1), 20);
  std::vector<int32_t> reference;
  {
    auto engine = make_engine(4096, 2048);
    reference = run(*engine, {target}, {0})[0];
  }
  ASSERT_EQ(reference.size(), 20u);

  struct Case {
    int32_t cache_tokens, budget;
    bool expect_preemption;
    bool async = false;  // the engine's async scheduling
  };
  for (const Case& c : {Case{4096, 1, false}, Case{4096, 7, false}, Case{4096, 64, false},
                        Case{96, 16, true}, Case{4096, 7, false, true}, Case{96, 16, true, true}}) {
    auto engine = make_engine(c.cache_tokens, c.budget, c.async);
    std::vector<Request> reqs;
    std::vector<int> arrival;
    for (int i = 0; i < 16; ++i) {
      // Every third request shares the target's first 12 prompt tokens (prefix reuse).
      std::vector<int32_t> p = prompt_of(3 + (i * 5) % 30, 100 + i);
      if (i % 3 == 0) p.insert(p.begin(), target.prompt_ids.begin(), target.prompt_ids.begin() + 12);
      reqs.push_back(greedy("r" + std::to_string(i), p, 4 + i % 9));
      arrival.push_back((i * 3) % 11);
    }
    reqs.insert(reqs.begin() + 6, target);
    arrival.insert(arrival.begin() + 6, 5);
    const auto out = run(*engine, reqs, arrival);
    EXPECT_EQ(out[6], reference) << "cache " << c.cache_tokens << ", budget " << c.budget
                                 << (c.async ? ", async" : "");
    const EngineStats st = engine->stats();
    EXPECT_EQ(st.preemptions > 0, c.expect_preemption) << "cache " << c.cache_tokens;
    EXPECT_EQ(st.num_free_kv_blocks, st.num_kv_blocks);
  }
}

}  // namespace
}  // namespace mixserve
