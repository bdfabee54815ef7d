// The engine against a fake backend whose logits hash every token read back through the
// paged KV cache: any block-table, slot, prefix-cache or recompute bug changes the output.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <tuple>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine_fakes.h"
#include "util/error.h"

namespace mixserve {
namespace {

using testing::FakeBackend;
using testing::FakeTokenizer;
using testing::fake_prompt;

// Every test runs twice: with the engine's async scheduling off and on (the suite's
// parameter, read by small_config).
bool g_async = false;

class EngineModes : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { g_async = GetParam(); }
  void TearDown() override { g_async = false; }
};

INSTANTIATE_TEST_SUITE_P(Scheduling, EngineModes, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "Async" : "Sync";
                         });

struct Harness {
  FakeBackend* backend = nullptr;
  std::unique_ptr<Engine> engine;
};

Harness make(EngineConfig cfg, float eos_bias = -1000.0f, bool with_tokenizer = true) {
  Harness h;
  auto b = std::make_unique<FakeBackend>(64, eos_bias);
  h.backend = b.get();
  std::shared_ptr<const Tokenizer> tok;
  if (with_tokenizer) tok = std::make_shared<FakeTokenizer>();
  h.engine = std::make_unique<Engine>(std::move(b), tok, cfg);
  return h;
}

EngineConfig small_config(int32_t cache_tokens = 4096, int32_t budget = 2048) {
  EngineConfig c;
  c.block_size = 8;
  c.kv_cache_tokens = cache_tokens;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = 32;
  c.async_scheduling = g_async;
  return c;
}

Request make_request(std::string id, std::vector<int32_t> prompt, int32_t max_tokens,
                     float temperature = 0.0f) {
  Request r;
  r.id = std::move(id);
  r.prompt_ids = std::move(prompt);
  r.params.max_tokens = max_tokens;
  r.params.temperature = temperature;
  return r;
}

// Submits requests[i] before step arrivals[i] and steps until everything finished.
std::vector<GenerateResult> run_staggered(Engine& engine, std::vector<Request> requests,
                                          std::vector<int> arrivals) {
  std::vector<GenerateResult> results(requests.size());
  std::vector<std::shared_ptr<TokenStream>> streams(requests.size());
  size_t submitted = 0;
  for (int step = 0; step < 100000; ++step) {
    for (size_t i = 0; i < requests.size(); ++i) {
      if (arrivals[i] == step) {
        results[i].samples.resize(size_t(requests[i].params.n));
        streams[i] = engine.submit(requests[i]);
        ++submitted;
      }
    }
    const bool did = engine.step();
    bool all_done = submitted == requests.size();
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!streams[i]) continue;
      while (auto ev = streams[i]->try_next()) {
        SampleOutput& out = results[i].samples[size_t(ev->sample_index)];
        out.token_ids.insert(out.token_ids.end(), ev->token_ids.begin(), ev->token_ids.end());
        out.text += ev->text;
        if (ev->finish_reason) out.finish_reason = *ev->finish_reason;
        if (ev->usage) out.usage = *ev->usage;
      }
      all_done = all_done && streams[i]->finished();
    }
    if (all_done) return results;
    EXPECT_TRUE(did || submitted < requests.size()) << "stalled at step " << step;
    if (!did && submitted == requests.size()) break;
  }
  ADD_FAILURE() << "did not finish";
  return results;
}

std::vector<int32_t> alone(const Request& r) {
  Harness h = make(small_config());
  auto res = h.engine->generate({r});
  return res[0].samples[0].token_ids;
}

TEST_P(EngineModes, GreedyOutputIsBatchInvariant) {
  const Request target = make_request("target", fake_prompt(37, 1), 24);
  const std::vector<int32_t> reference = alone(target);
  ASSERT_EQ(reference.size(), 24u);

  struct Case {
    int32_t cache_tokens, budget;
    bool expect_preemption;
  };
  for (const Case& c : {Case{4096, 1, false}, Case{4096, 7, false}, Case{4096, 64, false},
                        Case{160, 64, true}}) {
    Harness h = make(small_config(c.cache_tokens, c.budget));
    std::vector<Request> reqs;
    std::vector<int> arrivals;
    for (int i = 0; i < 16; ++i) {
      reqs.push_back(make_request("r" + std::to_string(i), fake_prompt(5 + i * 7 % 40, 100 + i),
                                  8 + i % 13));
      arrivals.push_back(i * 3 % 11);
    }
    reqs.insert(reqs.begin() + 5, target);
    arrivals.insert(arrivals.begin() + 5, 4);
    auto res = run_staggered(*h.engine, reqs, arrivals);
    EXPECT_EQ(res[5].samples[0].token_ids, reference)
        << "cache " << c.cache_tokens << " budget " << c.budget;
    for (size_t i = 0; i < res.size(); ++i) EXPECT_EQ(res[i].samples[0].finish_reason, "length");
    const EngineStats st = h.engine->stats();
    EXPECT_EQ(st.preemptions > 0, c.expect_preemption) << "cache " << c.cache_tokens;
    EXPECT_EQ(st.num_free_kv_blocks, st.num_kv_blocks);
    EXPECT_EQ(st.num_running + st.num_waiting, 0);
  }
}

TEST_P(EngineModes, PrefixReuseComputesLessAndChangesNothing) {
  std::vector<int32_t> shared = fake_prompt(40, 7);
  std::vector<int32_t> p1 = shared, p2 = shared;
  p1.insert(p1.end(), {3, 4, 5});
  p2.insert(p2.end(), {9, 9});
  auto run = [&](bool caching) {
    EngineConfig cfg = small_config();
    cfg.enable_prefix_caching = caching;
    Harness h = make(cfg);
    auto a = h.engine->generate({make_request("a", p1, 10)});
    auto b = h.engine->generate({make_request("b", p2, 10)});
    return std::make_tuple(a[0].samples[0], b[0].samples[0], h.engine->stats());
  };
  auto [a_on, b_on, st_on] = run(true);
  auto [a_off, b_off, st_off] = run(false);
  EXPECT_EQ(a_on.token_ids, a_off.token_ids);
  EXPECT_EQ(b_on.token_ids, b_off.token_ids);
  EXPECT_EQ(b_on.usage.cached_prompt_tokens, 40);  // 5 blocks of 8
  EXPECT_EQ(b_off.usage.cached_prompt_tokens, 0);
  EXPECT_EQ(st_on.cached_prompt_tokens, 40);
  EXPECT_EQ(st_off.prompt_tokens_computed - st_on.prompt_tokens_computed, 40);
  EXPECT_EQ(st_off.tokens_computed - st_on.tokens_computed, 40);
}

TEST_P(EngineModes, SeedReproducesWhateverTheBatch) {
  Request r = make_request("s", fake_prompt(20, 3), 16, /*temperature=*/1.0f);
  r.params.seed = 1234;
  const auto solo = alone(r);
  Harness h = make(small_config(4096, 7));
  std::vector<Request> reqs = {make_request("x", fake_prompt(30, 4), 20, 1.0f), r,
                               make_request("y", fake_prompt(9, 5), 12, 0.7f)};
  auto res = run_staggered(*h.engine, reqs, {0, 2, 1});
  EXPECT_EQ(res[1].samples[0].token_ids, solo);
  Request other = r;
  other.params.seed = 999;
  EXPECT_NE(alone(other), solo);
}

TEST_P(EngineModes, StopStringCutsExactlyAcrossTokens) {
  Request r = make_request("t", fake_prompt(12, 9), 30);
  Harness h0 = make(small_config());
  const SampleOutput full = h0.engine->generate({r})[0].samples[0];
  ASSERT_EQ(full.text.size(), 60u);  // two letters per token
  // A stop string that straddles tokens 10 and 11 (characters 21..23).
  const std::string stop = full.text.substr(21, 3);
  const size_t cut = full.text.find(stop);
  r.params.stop = {stop};
  Harness h = make(small_config());
  const SampleOutput got = h.engine->generate({r})[0].samples[0];
  EXPECT_EQ(got.finish_reason, "stop");
  EXPECT_EQ(got.text, full.text.substr(0, cut));
  // Generation stops at the token that completed the stop string.
  EXPECT_EQ(got.token_ids.size(), (cut + stop.size() + 1) / 2);
  EXPECT_EQ(h.engine->stats().num_free_kv_blocks, h.engine->stats().num_kv_blocks);
  // The text is made beside the next step, so that step computed the stopping token's
  // successor in vain: the 12 prompt tokens and every output token were computed (without
  // the overlap the last one would not be). With async scheduling the step after that was
  // planned before the text came back: one more token in vain.
  EXPECT_EQ(h.engine->stats().tokens_computed,
            12 + int64_t(got.token_ids.size()) + (GetParam() ? 1 : 0));
  EXPECT_EQ(h.engine->stats().generated_tokens, int64_t(got.token_ids.size()));
}

// Stop strings met by several sequences of one batch at different steps, beside sequences
// that end by length: every output equals the same request run alone, nothing leaks.
TEST_P(EngineModes, LateStopsInABatchMatchTheRequestsAlone) {
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) {
    Request r = make_request("s" + std::to_string(i), fake_prompt(10 + i, 20 + i), 24);
    Harness h0 = make(small_config());
    const std::string text = h0.engine->generate({r})[0].samples[0].text;
    if (i % 2 == 0) r.params.stop = {text.substr(4 + 6 * i, 3)};  // a different step each
    reqs.push_back(r);
  }
  Harness h = make(small_config());
  auto res = run_staggered(*h.engine, reqs, {0, 0, 1, 2, 2, 3});
  for (size_t i = 0; i < reqs.size(); ++i) {
    Harness one = make(small_config());
    const SampleOutput want = one.engine->generate({reqs[i]})[0].samples[0];
    const SampleOutput& got = res[i].samples[0];
    EXPECT_EQ(got.token_ids, want.token_ids) << reqs[i].id;
    EXPECT_EQ(got.text, want.text) << reqs[i].id;
    EXPECT_EQ(got.finish_reason, i % 2 == 0 ? "stop" : "length") << reqs[i].id;
    EXPECT_EQ(got.usage.completion_tokens, int32_t(got.token_ids.size())) << reqs[i].id;
  }
  EXPECT_EQ(h.engine->stats().num_free_kv_blocks, h.engine->stats().num_kv_blocks);
  EXPECT_EQ(h.engine->stats().num_running, 0);
}

TEST_P(EngineModes, EosMinTokensIgnoreEosAndStopTokenIds) {
  auto gen = [](float eos_bias, SamplingParams p) {
    Harness h = make(small_config(), eos_bias);
    Request r = make_request("e", fake_prompt(10, 2), 0);
    p.temperature = 0.0f;
    r.params = p;
    return h.engine->generate({r})[0].samples[0];
  };
  SamplingParams p;
  p.max_tokens = 12;
  auto eos_now = gen(1000.0f, p);  // EOS always wins
  EXPECT_EQ(eos_now.token_ids, std::vector<int32_t>({0}));
  EXPECT_EQ(eos_now.finish_reason, "stop");
  EXPECT_EQ(eos_now.text, "");
  p.min_tokens = 5;
  auto eos_late = gen(1000.0f, p);
  ASSERT_EQ(eos_late.token_ids.size(), 6u);
  EXPECT_EQ(eos_late.token_ids.back(), 0);
  for (size_t i = 0; i < 5; ++i) EXPECT_NE(eos_late.token_ids[i], 0);
  EXPECT_EQ(eos_late.usage.completion_tokens, 6);
  p.min_tokens = 0;
  p.ignore_eos = true;
  auto ignored = gen(1000.0f, p);
  EXPECT_EQ(ignored.finish_reason, "length");
  EXPECT_EQ(ignored.token_ids.size(), 12u);

  SamplingParams q;
  q.max_tokens = 30;
  auto free_run = gen(-1000.0f, q);
  q.stop_token_ids = {free_run.token_ids[6]};
  auto stopped = gen(-1000.0f, q);
  EXPECT_EQ(stopped.finish_reason, "stop");
  const auto first = std::find(free_run.token_ids.begin(), free_run.token_ids.end(),
                               free_run.token_ids[6]);
  EXPECT_EQ(stopped.token_ids.size(), size_t(first - free_run.token_ids.begin()) + 1);
}

TEST_P(EngineModes, SeveralSamplesShareThePrompt) {
  Request r = make_request("n", fake_prompt(43, 11), 10, 1.0f);
  r.params.n = 4;
  r.params.seed = 5;
  Harness h = make(small_config());
  auto res = h.engine->generate({r});
  ASSERT_EQ(res[0].samples.size(), 4u);
  std::set<std::vector<int32_t>> distinct;
  for (const auto& s : res[0].samples) {
    EXPECT_EQ(s.token_ids.size(), 10u);
    EXPECT_EQ(s.finish_reason, "length");
    distinct.insert(s.token_ids);
  }
  EXPECT_GE(distinct.size(), 2u);
  // Samples 1..3 reuse the 5 full prompt blocks and recompute only the 3-token tail.
  EXPECT_EQ(res[0].samples[3].usage.cached_prompt_tokens, 40);
  EXPECT_EQ(h.engine->stats().prompt_tokens_computed, 43 + 3 * 3);
  // Sample 0 equals the same seed run with n = 1.
  Request one = r;
  one.params.n = 1;
  EXPECT_EQ(alone(one), res[0].samples[0].token_ids);
}

TEST_P(EngineModes, CancellationFreesEveryBlock) {
  Harness h = make(small_config());
  auto s1 = h.engine->submit(make_request("c1", fake_prompt(30, 1), 500));
  auto s2 = h.engine->submit(make_request("c2", fake_prompt(30, 2), 5));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(h.engine->step());
  EXPECT_LT(h.engine->stats().num_free_kv_blocks, h.engine->stats().num_kv_blocks);
  s1->cancel();
  h.engine->abort("c2");
  h.engine->step();
  EXPECT_EQ(h.engine->stats().num_free_kv_blocks, h.engine->stats().num_kv_blocks);
  std::string reason;
  while (auto ev = s1->try_next())
    if (ev->finish_reason) reason = *ev->finish_reason;
  EXPECT_EQ(reason, "abort");
  EXPECT_TRUE(s1->finished());
  EXPECT_FALSE(h.engine->step());
}

TEST_P(EngineModes, LoopThreadServesStreamsAndCancels) {
  Harness h = make(small_config());
  h.engine->start();
  auto results = h.engine->generate(
      {make_request("a", fake_prompt(20, 1), 8), make_request("b", fake_prompt(25, 2), 9)});
  EXPECT_EQ(results[0].samples[0].token_ids, alone(make_request("a", fake_prompt(20, 1), 8)));
  auto s = h.engine->submit(make_request("long", fake_prompt(20, 3), 3000));
  ASSERT_TRUE(s->next(std::chrono::seconds(10)).has_value());
  s->cancel();
  std::string reason;
  while (auto ev = s->next(std::chrono::seconds(10)))
    if (ev->finish_reason) reason = *ev->finish_reason;
  EXPECT_EQ(reason, "abort");
  h.engine->shutdown(/*drain=*/true);
  EXPECT_EQ(h.engine->stats().num_free_kv_blocks, h.engine->stats().num_kv_blocks);
  EXPECT_THROW(h.engine->submit(make_request("late", fake_prompt(5, 1), 2)), Error);
}

TEST_P(EngineModes, SubmissionRejectsBadRequests) {
  Harness h = make(small_config(/*cache_tokens=*/256));
  auto message = [&](Request r) {
    try {
      h.engine->submit(std::move(r));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  Request bad_temp = make_request("t", fake_prompt(5, 1), 4);
  bad_temp.params.temperature = -1;
  EXPECT_NE(message(bad_temp).find("temperature must be >= 0"), std::string::npos);
  EXPECT_NE(message(make_request("big", fake_prompt(200, 1), 100)).find("maximum model length"),
            std::string::npos);
  EXPECT_NE(message(make_request("empty", {}, 4)).find("empty"), std::string::npos);
  EXPECT_NE(message(make_request("vocab", {1, 64}, 4)).find("vocabulary"), std::string::npos);
  EXPECT_EQ(message(make_request("ok", fake_prompt(200, 1), 56)), "accepted");
  EXPECT_EQ(h.engine->max_model_len(), 256);
  // max_tokens unset: up to the maximum model length.
  Request open = make_request("open", fake_prompt(250, 1), 1);
  open.params.max_tokens.reset();
  EXPECT_EQ(message(open), "accepted");
  h.engine->shutdown(true);
}

TEST_P(EngineModes, TinyCacheNeverDeadlocks) {
  // 6 blocks of 8 tokens; every request needs up to 48 tokens, so at most one fits at a time.
  Harness h = make(small_config(/*cache_tokens=*/48, /*budget=*/16));
  std::vector<Request> reqs;
  for (int i = 0; i < 10; ++i)
    reqs.push_back(make_request("r" + std::to_string(i), fake_prompt(10 + i * 3, i), 48 - 10 - i * 3));
  std::vector<std::shared_ptr<TokenStream>> streams;
  for (auto& r : reqs) streams.push_back(h.engine->submit(r));
  int steps = 0;
  while (h.engine->step()) ASSERT_LT(++steps, 5000) << "no progress";
  for (auto& s : streams) {
    std::string reason;
    while (auto ev = s->try_next())
      if (ev->finish_reason) reason = *ev->finish_reason;
    EXPECT_EQ(reason, "length");
  }
  EXPECT_EQ(h.engine->stats().num_free_kv_blocks, 6);
}

// Usage::queue_time_s runs from arrival to the first scheduled step: with one sequence at a
// time, the second request waits for the whole first one.
TEST_P(EngineModes, QueueTimeIncludesTheWaitForABatchSlot) {
  EngineConfig cfg = small_config();
  cfg.max_num_seqs = 1;
  Harness h = make(cfg);
  const auto results = run_staggered(
      *h.engine, {make_request("a", fake_prompt(5, 1), 6), make_request("b", fake_prompt(7, 2), 6)},
      {0, 0});
  const Usage& a = results[0].samples[0].usage;
  const Usage& b = results[1].samples[0].usage;
  EXPECT_GE(a.queue_time_s, 0.0);
  EXPECT_GT(b.queue_time_s, a.queue_time_s);
  EXPECT_EQ(a.completion_tokens, 6);
  EXPECT_EQ(b.completion_tokens, 6);
}

// Step time and the backend's share of it accumulate per step that ran (bench offline reports
// the host time outside forward from them).
TEST_P(EngineModes, StepAndForwardTimesAccumulate) {
  Harness h = make(small_config());
  const EngineStats before = h.engine->stats();
  EXPECT_EQ(before.step_seconds, 0.0);
  h.engine->generate({make_request("t", fake_prompt(9, 3), 4)});
  const EngineStats after = h.engine->stats();
  ASSERT_GT(after.steps, 0);
  EXPECT_GT(after.forward_seconds, 0.0);
  EXPECT_GE(after.step_seconds, after.forward_seconds);
  // The host's parts: each counted, together within the steps' time.
  EXPECT_GT(after.schedule_seconds, 0.0);
  EXPECT_GT(after.plan_seconds, 0.0);
  EXPECT_GT(after.output_seconds, 0.0);
  EXPECT_LE(after.schedule_seconds + after.plan_seconds + after.forward_seconds +
                after.output_seconds,
            after.step_seconds * (1 + 1e-9));
  h.engine->step();  // nothing to do: no time added
  EXPECT_EQ(h.engine->stats().step_seconds, after.step_seconds);
  EXPECT_EQ(h.engine->stats().schedule_seconds, after.schedule_seconds);
}

TEST_P(EngineModes, LogprobsAndNoTokenizer) {
  Harness h = make(small_config(), -1000.0f, /*with_tokenizer=*/false);
  Request r = make_request("lp", fake_prompt(9, 4), 5);
  r.params.logprobs = 3;
  auto out = h.engine->generate({r})[0].samples[0];
  ASSERT_EQ(out.logprobs.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out.logprobs[i].id, out.token_ids[i]);
    ASSERT_EQ(out.logprobs[i].top.size(), 3u);
    EXPECT_EQ(out.logprobs[i].top[0].id, out.token_ids[i]);  // greedy = most likely
    EXPECT_FLOAT_EQ(out.logprobs[i].top[0].logprob, out.logprobs[i].logprob);
    EXPECT_LT(out.logprobs[i].logprob, 0.0f);
  }
  EXPECT_EQ(out.text, "");
}

// A mixed workload (greedy and seeded sampling, penalties, min_tokens, EOS, stop ids, stop
// strings, n = 2, log-probabilities, staggered arrivals, a cache small enough to preempt)
// gives the same tokens, text, finish reasons and usage with async scheduling as without;
// with host sampling (FakeBackend) and with device sampling (FakeDeviceBackend).
std::vector<Request> mixed_requests(bool device) {
  std::vector<Request> reqs;
  for (int i = 0; i < 18; ++i) {
    Request r = make_request("m" + std::to_string(i), fake_prompt(4 + i * 5 % 29, 300 + i),
                             6 + i * 7 % 19);
    SamplingParams& p = r.params;
    if (!device && i % 3 == 1) {
      p.temperature = 0.8f;
      p.top_p = 0.9f;
      p.seed = uint64_t(40 + i);
    }
    if (i % 4 == 2) {
      p.repetition_penalty = 1.3f;
      p.frequency_penalty = 0.4f;
      p.presence_penalty = 0.2f;
    }
    if (i % 5 == 3) p.min_tokens = 4;
    if (i % 6 == 4) p.stop_token_ids = {7, 19, 33};
    if (i % 7 == 5) p.logprobs = 2;
    if (!device && i == 8) {
      p.n = 2;
      p.seed = 77;
      p.temperature = 1.0f;
    }
    reqs.push_back(r);
  }
  return reqs;
}

void expect_async_matches_sync(bool device) {
  auto run = [&](bool async, std::vector<Request> reqs, std::vector<int> arrivals) {
    EngineConfig cfg = small_config(/*cache_tokens=*/72, /*budget=*/24);
    cfg.async_scheduling = async;
    std::unique_ptr<FakeBackend> b =
        device ? std::make_unique<testing::FakeDeviceBackend>(64, 5.5f)
               : std::make_unique<FakeBackend>(64, 5.5f);
    Engine engine(std::move(b), std::make_shared<FakeTokenizer>(), cfg);
    auto res = run_staggered(engine, std::move(reqs), std::move(arrivals));
    return std::make_pair(res, engine.stats());
  };
  std::vector<Request> reqs = mixed_requests(device);
  // Stop strings from a first run's text, at different steps.
  {
    auto [first, st] = run(false, reqs, std::vector<int>(reqs.size(), 0));
    for (size_t i = 0; i < reqs.size(); i += 4) {
      const std::string& text = first[i].samples[0].text;
      if (text.size() >= 9) reqs[i].params.stop = {text.substr(text.size() / 2, 3)};
    }
  }
  std::vector<int> arrivals;
  for (size_t i = 0; i < reqs.size(); ++i) arrivals.push_back(int(i * 5 % 13));
  auto [sync_res, sync_st] = run(false, reqs, arrivals);
  auto [async_res, async_st] = run(true, reqs, arrivals);
  std::set<std::string> reasons;
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(async_res[i].samples.size(), sync_res[i].samples.size());
    for (size_t j = 0; j < sync_res[i].samples.size(); ++j) {
      const SampleOutput& a = async_res[i].samples[j];
      const SampleOutput& s = sync_res[i].samples[j];
      EXPECT_EQ(a.token_ids, s.token_ids) << reqs[i].id << "/" << j;
      EXPECT_EQ(a.text, s.text) << reqs[i].id << "/" << j;
      EXPECT_EQ(a.finish_reason, s.finish_reason) << reqs[i].id << "/" << j;
      EXPECT_EQ(a.usage.completion_tokens, s.usage.completion_tokens) << reqs[i].id;
      EXPECT_EQ(a.usage.completion_tokens, int32_t(s.token_ids.size())) << reqs[i].id;
      ASSERT_EQ(a.logprobs.size(), s.logprobs.size()) << reqs[i].id;
      for (size_t k = 0; k < a.logprobs.size(); ++k) {
        EXPECT_EQ(a.logprobs[k].id, s.logprobs[k].id);
        EXPECT_FLOAT_EQ(a.logprobs[k].logprob, s.logprobs[k].logprob);
      }
      reasons.insert(s.finish_reason + (s.text.empty() ? "" : "+text"));
    }
  }
  // The workload exercises what it claims to.
  EXPECT_GT(sync_st.preemptions, 0);
  EXPECT_TRUE(reasons.count("length+text")) << "no request ran to max_tokens";
  EXPECT_TRUE(reasons.count("stop") || reasons.count("stop+text")) << "nothing stopped";
  EXPECT_EQ(async_st.generated_tokens, sync_st.generated_tokens);
  EXPECT_EQ(async_st.requests_finished, sync_st.requests_finished);
  EXPECT_EQ(async_st.num_free_kv_blocks, async_st.num_kv_blocks);
  EXPECT_EQ(async_st.num_running + async_st.num_waiting, 0);
  // Every step but the first was planned while the step before it was in flight.
  EXPECT_GT(async_st.launch_gaps, 0);
}

TEST(EngineAsync, MatchesSyncWithHostSampling) { expect_async_matches_sync(false); }
TEST(EngineAsync, MatchesSyncWithDeviceSampling) { expect_async_matches_sync(true); }

// With async scheduling a step is in flight between two step() calls; the engine collects it
// on the next call even when nothing new is scheduled, and a cancellation while it is in
// flight drops its token.
TEST(EngineAsync, StepInFlightIsCollectedAndCancellable) {
  EngineConfig cfg = small_config();
  cfg.async_scheduling = true;
  auto backend = std::make_unique<testing::FakeDeviceBackend>(64);
  testing::FakeDeviceBackend* dev = backend.get();
  Engine engine(std::move(backend), std::make_shared<FakeTokenizer>(), cfg);
  auto s = engine.submit(make_request("one", fake_prompt(9, 1), 1));
  ASSERT_TRUE(engine.step());  // prefill submitted; its token not collected yet
  EXPECT_EQ(dev->device_steps(), 1);
  EXPECT_FALSE(s->try_next().has_value());
  ASSERT_TRUE(engine.step());  // nothing to schedule (max_tokens 1): collects and finishes
  EXPECT_EQ(dev->device_steps(), 1);
  auto ev = s->try_next();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->token_ids.size(), 1u);
  EXPECT_EQ(ev->finish_reason.value_or(""), "length");
  EXPECT_FALSE(engine.step());

  auto c = engine.submit(make_request("two", fake_prompt(9, 2), 50));
  ASSERT_TRUE(engine.step());
  ASSERT_TRUE(engine.step());
  c->cancel();
  ASSERT_TRUE(engine.step());  // the step in flight is collected, its token dropped
  std::string reason;
  size_t tokens = 0;
  while (auto e = c->try_next()) {
    tokens += e->token_ids.size();
    if (e->finish_reason) reason = *e->finish_reason;
  }
  EXPECT_EQ(reason, "abort");
  EXPECT_EQ(tokens, 1u);  // the first step's token only
  EXPECT_FALSE(engine.step());
  EXPECT_EQ(engine.stats().num_free_kv_blocks, engine.stats().num_kv_blocks);
}

}  // namespace
}  // namespace mixserve
