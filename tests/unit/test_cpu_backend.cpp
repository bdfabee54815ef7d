// CPU reference backend against a naive forward pass, and its invariances: prefill vs decode,
// batch composition, thread count, block placement, routing corner cases, sliding window.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "backend/cpu/cpu_moe.h"
#include "cpu_test_support.h"
#include "util/error.h"

namespace mixserve {
namespace {

using cpu_test::PlanBuilder;
using cpu_test::random_tokens;
using cpu_test::run;

constexpr double kTol = 1e-5;

std::unique_ptr<CpuBackend> make_backend(const ModelConfig& c, uint64_t seed, int threads,
                                         int block_size = 4, int num_blocks = 64) {
  auto b = std::make_unique<CpuBackend>(c, make_random_cpu_weights(c, seed), threads);
  b->allocate_kv_cache({num_blocks, block_size});
  return b;
}

// Compares logits row r of `got` with reference row `ref_row`.
void expect_row_matches(const std::vector<float>& got, int r, const std::vector<double>& ref,
                        const std::string& what) {
  const size_t V = ref.size();
  const double err = cpu_test::max_rel_error(std::span(got).subspan(r * V, V), ref);
  EXPECT_LT(err, kTol) << what;
}

struct NamedConfig {
  const char* name;
  ModelConfig config;
};
void PrintTo(const NamedConfig& n, std::ostream* os) { *os << n.name; }

class CpuBackendVsNaive : public ::testing::TestWithParam<NamedConfig> {};

TEST_P(CpuBackendVsNaive, WholePromptsOfAwkwardLengths) {
  const ModelConfig& c = GetParam().config;
  for (int len : {1, 3, 17}) {
    auto backend = make_backend(c, 7, 2);
    PlanBuilder pb(4, 64, 100 + len);
    const std::vector<int> tokens = random_tokens(len, c.vocab_size, len);
    const int s = pb.add(tokens);
    const std::vector<float> got = run(*backend, pb.step({{s, len}}, true));
    const cpu_test::Matrix ref = cpu_test::naive_logits(c, backend->weights(), tokens);
    for (int t = 0; t < len; ++t) {
      expect_row_matches(got, t, ref[t], "length " + std::to_string(len) + " row " +
                                             std::to_string(t));
    }
  }
}

TEST_P(CpuBackendVsNaive, MixedBatchesOfChunksAndDecodes) {
  // Three sequences share every step: A is prefilled in chunks across block boundaries, B
  // decodes one token a step after a short prefill, C arrives late. Block size 3 and a
  // shuffled pool make every block table non-contiguous.
  const ModelConfig& c = GetParam().config;
  auto backend = make_backend(c, 11, 3, /*block_size=*/3, /*num_blocks=*/40);
  PlanBuilder pb(3, 40, 5);
  const std::vector<int> ta = random_tokens(17, c.vocab_size, 1);
  const std::vector<int> tb = random_tokens(9, c.vocab_size, 2);
  const std::vector<int> tc = random_tokens(5, c.vocab_size, 3);
  const int a = pb.add(ta), b = pb.add(tb), cc = pb.add(tc);
  const std::vector<std::vector<std::pair<int, int>>> steps = {
      {{a, 5}, {b, 4}}, {{b, 1}, {a, 7}}, {{a, 5}, {b, 1}, {cc, 3}}, {{cc, 2}, {b, 1}},
      {{b, 1}, {b, 0}}};
  const cpu_test::Matrix ra = cpu_test::naive_logits(c, backend->weights(), ta);
  const cpu_test::Matrix rb = cpu_test::naive_logits(c, backend->weights(), tb);
  const cpu_test::Matrix rc = cpu_test::naive_logits(c, backend->weights(), tc);
  const cpu_test::Matrix* refs[] = {&ra, &rb, &rc};
  for (size_t i = 0; i < steps.size(); ++i) {
    std::vector<std::pair<int, int>> work;  // drop the zero-length entry, it is no sequence
    for (auto w : steps[i]) {
      if (w.second > 0) work.push_back(w);
    }
    std::vector<int> starts;
    for (auto [s, n] : work) starts.push_back(pb.seq(s).computed);
    const BatchPlan plan = pb.step(work, true, /*extra_table_columns=*/1);
    const std::vector<float> got = run(*backend, plan);
    int row = 0;
    for (size_t w = 0; w < work.size(); ++w) {
      for (int k = 0; k < work[w].second; ++k, ++row) {
        const int pos = starts[w] + k;
        expect_row_matches(got, row, (*refs[work[w].first])[pos],
                           "step " + std::to_string(i) + " seq " + std::to_string(work[w].first) +
                               " pos " + std::to_string(pos));
      }
    }
  }
}

TEST_P(CpuBackendVsNaive, PrefillEqualsTokenByTokenDecode) {
  const ModelConfig& c = GetParam().config;
  const std::vector<int> tokens = random_tokens(13, c.vocab_size, 9);
  auto prefill = make_backend(c, 3, 2);
  PlanBuilder pp(4, 64, 1);
  const std::vector<float> all = run(*prefill, pp.step({{pp.add(tokens), 13}}, true));
  auto decode = make_backend(c, 3, 2);
  PlanBuilder pd(4, 64, 2);
  const int s = pd.add(tokens);
  const size_t V = c.vocab_size;
  for (int t = 0; t < 13; ++t) {
    const std::vector<float> one = run(*decode, pd.step({{s, 1}}, true));
    for (size_t i = 0; i < V; ++i) {
      ASSERT_NEAR(one[i], all[t * V + i], kTol * std::max(1.0f, std::abs(all[t * V + i])));
      // Stronger than the tolerance: a token's arithmetic does not depend on the batch.
      ASSERT_EQ(one[i], all[t * V + i]) << "position " << t << " vocab " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CpuBackendVsNaive,
                         ::testing::Values(NamedConfig{"moe", cpu_test::moe_config()},
                                           NamedConfig{"dense", cpu_test::dense_config()},
                                           NamedConfig{"mqa", cpu_test::mqa_config()}),
                         [](const auto& info) { return std::string(info.param.name); });

// Sequence A (prefill 9, then 4 decodes) alone on one thread, and with other sequences on
// three threads: A's logits must be bit-identical.
TEST(CpuBackend, BatchCompositionAndThreadsDoNotChangeLogits) {
  const ModelConfig c = cpu_test::moe_config();
  const std::vector<int> ta = random_tokens(13, c.vocab_size, 21);
  std::vector<std::vector<float>> alone;
  {
    auto backend = make_backend(c, 5, 1);
    PlanBuilder pb(4, 64, 8);
    const int a = pb.add(ta);
    alone.push_back(run(*backend, pb.step({{a, 9}}, false)));
    for (int i = 0; i < 4; ++i) alone.push_back(run(*backend, pb.step({{a, 1}}, false)));
  }
  auto backend = make_backend(c, 5, 3);
  PlanBuilder pb(4, 64, 99);
  const int b = pb.add(random_tokens(20, c.vocab_size, 22));
  const int d = pb.add(random_tokens(6, c.vocab_size, 23));
  run(*backend, pb.step({{d, 5}}, false));  // d is decoding by the time A arrives
  const int a = pb.add(ta);
  const size_t V = c.vocab_size;
  // Step 0: B chunk, A prefill, D decode; A's row is the second of three logits rows.
  std::vector<float> got = run(*backend, pb.step({{b, 6}, {a, 9}, {d, 1}}, false));
  EXPECT_TRUE(std::equal(alone[0].begin(), alone[0].end(), got.begin() + V));
  const std::vector<std::vector<std::pair<int, int>>> later = {
      {{a, 1}, {b, 7}}, {{b, 7}, {a, 1}}, {{a, 1}}, {{b, 0}, {a, 1}}};
  for (size_t i = 0; i < later.size(); ++i) {
    std::vector<std::pair<int, int>> work;
    for (auto w : later[i]) {
      if (w.second > 0) work.push_back(w);
    }
    got = run(*backend, pb.step(work, false));
    const size_t row = work[0].first == a ? 0 : 1;
    EXPECT_TRUE(std::equal(alone[i + 1].begin(), alone[i + 1].end(), got.begin() + row * V))
        << "decode step " << i;
  }
}

TEST(CpuBackend, ThreadCountDoesNotChangeAnything) {
  const ModelConfig c = cpu_test::mqa_config();
  const std::vector<int> tokens = random_tokens(23, c.vocab_size, 4);
  std::vector<float> first;
  for (int threads : {1, 2, 5}) {
    auto backend = make_backend(c, 8, threads);
    PlanBuilder pb(4, 64, 3);
    const std::vector<float> got = run(*backend, pb.step({{pb.add(tokens), 23}}, true));
    if (first.empty()) first = got;
    EXPECT_EQ(got, first) << threads << " threads";
  }
}

// With every router weight zero all E probabilities tie; torch.topk keeps the lowest indices,
// so experts 0..K-1 take every token, each with weight 1/K, and the others stay empty: their
// weights (NaN here) must never be read.
TEST(CpuBackend, RouterTiesSendEveryTokenToTheLowestExperts) {
  const ModelConfig c = cpu_test::moe_config();
  CpuWeights w = make_random_cpu_weights(c, 13);
  for (CpuLayerWeights& lw : w.layers) {
    std::fill(lw.router.begin(), lw.router.end(), 0.0f);
    for (int e = c.num_experts_per_tok; e < c.num_local_experts; ++e) {
      std::fill(lw.experts[e].w1.begin(), lw.experts[e].w1.end(), NAN);
      std::fill(lw.experts[e].w2.begin(), lw.experts[e].w2.end(), NAN);
    }
  }
  const std::vector<float> x(size_t(5) * c.hidden_size, 0.25f);
  const cpu::Routing r = cpu::route_tokens(x.data(), 5, c, w.layers[0], 1);
  for (int t = 0; t < 5; ++t) {
    EXPECT_EQ(r.experts[t * 2], 0);
    EXPECT_EQ(r.experts[t * 2 + 1], 1);
    EXPECT_EQ(r.weights[t * 2], 0.5f);
    EXPECT_EQ(r.weights[t * 2 + 1], 0.5f);
  }
  CpuBackend backend(c, w, 2);
  backend.allocate_kv_cache({16, 4});
  const std::vector<int> tokens = random_tokens(11, c.vocab_size, 6);
  PlanBuilder pb(4, 16, 1);
  const std::vector<float> got = run(backend, pb.step({{pb.add(tokens), 11}}, true));
  for (float v : got) ASSERT_TRUE(std::isfinite(v));
  // The naive reference must not read the NaN experts either.
  const cpu_test::Matrix ref = cpu_test::naive_logits(c, backend.weights(), tokens);
  for (int t = 0; t < 11; ++t) expect_row_matches(got, t, ref[t], "row " + std::to_string(t));
}

TEST(CpuBackend, RouterPicksTopKAndRenormalises) {
  // H = 4, E = 4, top-2. x = e0 gives logits = column 0 of the router: (1, 3, 3, 2): the tie
  // between experts 1 and 2 goes to 1 first, and the two chosen probabilities sum to 1.
  ModelConfig c = cpu_test::moe_config();
  c.hidden_size = 4;
  CpuLayerWeights lw;
  lw.router = {1, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0};  // [E=4, H=4]
  const float x[4] = {1, 0, 0, 0};
  const cpu::Routing r = cpu::route_tokens(x, 1, c, lw, 1);
  EXPECT_EQ(r.experts[0], 1);
  EXPECT_EQ(r.experts[1], 2);
  EXPECT_FLOAT_EQ(r.weights[0], 0.5f);
  EXPECT_FLOAT_EQ(r.weights[0] + r.weights[1], 1.0f);
  // Distinct logits (4, 0, 1, 0): experts 0 then 2, weights e^4 / (e^4 + e) and e / (e^4 + e).
  lw.router = {4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
  const cpu::Routing r2 = cpu::route_tokens(x, 1, c, lw, 1);
  EXPECT_EQ(r2.experts[0], 0);
  EXPECT_EQ(r2.experts[1], 2);
  const double e4 = std::exp(4.0), e1 = std::exp(1.0);
  EXPECT_NEAR(r2.weights[0], e4 / (e4 + e1), 1e-6);
  EXPECT_NEAR(r2.weights[1], e1 / (e4 + e1), 1e-6);
}

TEST(CpuBackend, SlidingWindowOnlyChangesPositionsPastTheWindow) {
  ModelConfig plain = cpu_test::moe_config();
  ModelConfig windowed = plain;
  windowed.sliding_window = 5;
  const std::vector<int> tokens = random_tokens(12, plain.vocab_size, 31);
  auto a = make_backend(plain, 17, 2);
  auto b = make_backend(windowed, 17, 2);
  PlanBuilder pa(4, 64, 1), pbld(4, 64, 2);
  const std::vector<float> la = run(*a, pa.step({{pa.add(tokens), 12}}, true));
  const std::vector<float> lb = run(*b, pbld.step({{pbld.add(tokens), 12}}, true));
  const size_t V = plain.vocab_size;
  for (int t = 0; t < 12; ++t) {
    const bool same = std::equal(la.begin() + t * V, la.begin() + (t + 1) * V, lb.begin() + t * V);
    EXPECT_EQ(same, t < 5) << "position " << t;
  }
  const cpu_test::Matrix ref = cpu_test::naive_logits(windowed, b->weights(), tokens);
  for (int t = 0; t < 12; ++t) expect_row_matches(lb, t, ref[t], "row " + std::to_string(t));
  // Decoding past the window reads only the last 5 cached positions, through the blocks.
  PlanBuilder pd(4, 64, 3);
  auto c = make_backend(windowed, 17, 1);
  const int s = pd.add(tokens);
  run(*c, pd.step({{s, 9}}, false));
  const std::vector<float> last = run(*c, pd.step({{s, 3}}, false));
  expect_row_matches(last, 0, ref[11], "decode past the window");
}

TEST(CpuBackend, ReportsKvSizeAndKeepsSpec) {
  const ModelConfig c = cpu_test::moe_config();
  CpuBackend backend(c, make_random_cpu_weights(c, 1), 1);
  EXPECT_EQ(backend.kv_bytes_per_token(), size_t(2 * 2 * 2 * 8 * 4));  // L * 2 * Hkv * D * 4
  backend.allocate_kv_cache({7, 5});
  EXPECT_EQ(backend.kv_cache_spec().num_blocks, 7);
  EXPECT_EQ(backend.kv_cache_spec().block_size, 5);
  EXPECT_EQ(backend.name(), "cpu");
}

TEST(CpuBackend, RejectsMisuseWithClearErrors) {
  const ModelConfig c = cpu_test::moe_config();
  CpuBackend backend(c, make_random_cpu_weights(c, 1), 1);
  PlanBuilder pb(4, 8, 1);
  BatchPlan plan = pb.step({{pb.add({1, 2, 3}), 3}}, false);
  std::vector<float> logits(c.vocab_size);
  EXPECT_THROW(backend.forward(plan, logits), Error);  // no KV cache yet
  backend.allocate_kv_cache({8, 4});
  std::vector<float> small(c.vocab_size - 1);
  EXPECT_THROW(backend.forward(plan, small), Error);
  plan.token_ids[1] = c.vocab_size;
  EXPECT_THROW(backend.forward(plan, logits), Error);

  CpuWeights w = make_random_cpu_weights(c, 1);
  w.layers[1].experts[3].w2.pop_back();
  try {
    CpuBackend bad(c, std::move(w), 1);
    FAIL() << "a short tensor was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.block_sparse_moe.experts.3.w2.weight"),
              std::string::npos)
        << e.what();
  }
  ModelConfig odd = c;
  odd.num_key_value_heads = 4;  // 6 query heads do not split into 4 groups
  EXPECT_THROW(CpuBackend(odd, make_random_cpu_weights(odd, 1), 1), Error);
}

}  // namespace
}  // namespace mixserve
