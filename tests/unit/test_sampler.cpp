#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/request.h"
#include "engine/sampler.h"
#include "util/error.h"

namespace mixserve {
namespace {

int32_t draw(std::vector<float> logits, const SamplingParams& p, uint64_t seed = 1,
             std::vector<int32_t> prompt = {}, std::vector<int32_t> out = {}) {
  SampleContext ctx{prompt, out, {}, seed, 0};
  return sample_token(logits, p, ctx).id;
}

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

TEST(Sampler, GreedyPicksArgmaxAndLowestIdOnTies) {
  EXPECT_EQ(draw({0.f, 3.f, 1.f, 3.f}, greedy()), 1);
  EXPECT_EQ(draw({-5.f, -1.f, -1.f}, greedy()), 1);
}

TEST(Sampler, TruncationToOneCandidateIsGreedy) {
  const std::vector<float> l = {0.1f, 2.0f, 1.9f, -3.0f};
  SamplingParams k1;
  k1.top_k = 1;
  SamplingParams p_small;
  p_small.top_p = 0.01f;
  SamplingParams minp;
  minp.min_p = 0.99f;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    EXPECT_EQ(draw(l, k1, seed), 1);
    EXPECT_EQ(draw(l, p_small, seed), 1);
    EXPECT_EQ(draw(l, minp, seed), 1);
  }
}

TEST(Sampler, TopKAndTopPRestrictTheCandidates) {
  // probabilities 0.5, 0.3, 0.15, 0.05
  const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams k2;
  k2.top_k = 2;
  SamplingParams p75;
  p75.top_p = 0.75f;  // 0.5 + 0.3 reaches it: {0, 1}
  SamplingParams minp;
  minp.min_p = 0.25f;  // keeps p >= 0.125: {0, 1, 2}
  bool saw[3][4] = {};
  for (uint64_t seed = 0; seed < 400; ++seed) {
    saw[0][draw(l, k2, seed)] = true;
    saw[1][draw(l, p75, seed)] = true;
    saw[2][draw(l, minp, seed)] = true;
  }
  EXPECT_TRUE(saw[0][0] && saw[0][1] && !saw[0][2] && !saw[0][3]);
  EXPECT_TRUE(saw[1][0] && saw[1][1] && !saw[1][2] && !saw[1][3]);
  EXPECT_TRUE(saw[2][0] && saw[2][1] && saw[2][2] && !saw[2][3]);
}

TEST(Sampler, DrawsFollowTheSoftmax) {
  const std::vector<float> l = {std::log(0.2f), std::log(0.3f), std::log(0.5f)};
  SamplingParams p;
  int counts[3] = {};
  const int N = 20000;
  for (int i = 0; i < N; ++i) {
    SampleContext ctx{{}, {}, {}, 99, i};  // a different sample index per draw
    std::vector<float> row = l;
    ++counts[sample_token(row, p, ctx).id];
  }
  EXPECT_NEAR(counts[0] / double(N), 0.2, 0.015);
  EXPECT_NEAR(counts[1] / double(N), 0.3, 0.015);
  EXPECT_NEAR(counts[2] / double(N), 0.5, 0.015);
}

TEST(Sampler, TemperatureSharpens) {
  const std::vector<float> l = {0.0f, 1.0f};
  SamplingParams cold;
  cold.temperature = 0.05f;  // p(0) = e^-20
  for (uint64_t s = 0; s < 200; ++s) EXPECT_EQ(draw(l, cold, s), 1);
}

TEST(Sampler, SameSeedSameDrawDifferentSeedsDiffer) {
  std::vector<float> l(32, 0.0f);
  SamplingParams p;
  std::vector<int32_t> a, b, c;
  for (int step = 0; step < 20; ++step) {
    std::vector<int32_t> out(size_t(step), 1);
    a.push_back(draw(l, p, 7, {}, out));
    b.push_back(draw(l, p, 7, {}, out));
    c.push_back(draw(l, p, 8, {}, out));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (int i = 0; i < 1000; ++i) {
    const double u = counter_uniform(3, 0, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p = greedy();
  p.repetition_penalty = 2.0f;
  // Token 0 (seen, 3.0 -> 1.5) loses to token 1 (2.0, unseen).
  EXPECT_EQ(draw({3.0f, 2.0f}, p, 1, {0}), 1);
  // Token 1 (seen, -1.0 -> -2.0) loses to token 0 (-1.5, unseen).
  EXPECT_EQ(draw({-1.5f, -1.0f}, p, 1, {}, {1}), 0);
}

TEST(Sampler, PresenceAndFrequencyPenalisesOutputTokensOnly) {
  SamplingParams p = greedy();
  p.frequency_penalty = 0.5f;
  // Token 0 appears twice in the output: 2.0 - 1.0 = 1.0 < 1.5.
  EXPECT_EQ(draw({2.0f, 1.5f}, p, 1, {}, {0, 0}), 1);
  EXPECT_EQ(draw({2.0f, 1.5f}, p, 1, {0, 0}, {}), 0);  // prompt tokens are not counted
  SamplingParams q = greedy();
  q.presence_penalty = 0.6f;
  EXPECT_EQ(draw({2.0f, 1.5f}, q, 1, {}, {0, 0, 0}), 1);  // once: 2.0 - 0.6 = 1.4
  SamplingParams r = greedy();
  r.presence_penalty = -1.0f;  // negative values encourage repeats
  EXPECT_EQ(draw({1.0f, 1.5f}, r, 1, {}, {0}), 0);
}

TEST(Sampler, SuppressedIdsAreNeverChosen) {
  std::vector<int32_t> sup = {1};
  SampleContext ctx{{}, {}, sup, 1, 0};
  std::vector<float> l = {0.0f, 9.0f, 1.0f};
  EXPECT_EQ(sample_token(l, greedy(), ctx).id, 2);
}

TEST(Sampler, LogprobsAreOfTheRawLogits) {
  SamplingParams p;
  p.temperature = 0.5f;
  p.repetition_penalty = 3.0f;
  p.logprobs = 2;
  std::vector<float> l = {1.0f, 2.0f, 2.0f, 0.5f};
  const std::vector<float> raw = l;
  std::vector<int32_t> prompt = {1};
  SampleContext ctx{prompt, {}, {}, 5, 0};
  SampleResult r = sample_token(l, p, ctx);
  double z = 0;
  for (float x : raw) z += std::exp(double(x));
  EXPECT_NEAR(r.logprobs.logprob, raw[size_t(r.id)] - std::log(z), 1e-5);
  EXPECT_EQ(r.logprobs.id, r.id);
  ASSERT_EQ(r.logprobs.top.size(), 2u);
  EXPECT_EQ(r.logprobs.top[0].id, 1);  // tie between 1 and 2: the lower id first
  EXPECT_EQ(r.logprobs.top[1].id, 2);
  EXPECT_NEAR(r.logprobs.top[0].logprob, 2.0 - std::log(z), 1e-5);
}

TEST(SamplingParams, ValidateNamesTheParameter) {
  auto message = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    try {
      p.validate();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("valid");
  };
  EXPECT_EQ(message([](SamplingParams&) {}), "valid");
  EXPECT_EQ(message([](SamplingParams& p) { p.temperature = -1; }),
            "temperature must be >= 0, got -1");
  EXPECT_NE(message([](SamplingParams& p) { p.top_p = 0; }).find("top_p"), std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.top_p = 1.5f; }).find("top_p"), std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.top_k = 0; }).find("top_k"), std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.min_p = 2; }).find("min_p"), std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.presence_penalty = 3; }).find("presence_penalty"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.frequency_penalty = -3; }).find("frequency"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.repetition_penalty = 0; }).find("repetition"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.n = 0; }).find("n must"), std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.max_tokens = 0; }).find("max_tokens"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.logprobs = 21; }).find("logprobs"),
            std::string::npos);
  EXPECT_NE(message([](SamplingParams& p) { p.stop = {""}; }).find("stop"), std::string::npos);
}

}  // namespace
}  // namespace mixserve
