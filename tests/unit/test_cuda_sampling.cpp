// Device sampler (backend/cuda/sampling.h) against the host Sampler (engine/sampler.h) on
// random logits: greedy identical (with many exact ties), penalised logits bit-identical,
// seeded draws under temperature / top-k / top-p / min-p identical (many draws per row, so a
// token outside the host's truncation would show up), except where the host's target or a
// truncation threshold is within rounding of a cumulative-probability boundary (counted;
// with random logits essentially never).
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cuda/sampling.h"
#include "engine/device_sampling.h"
#include "engine/sampler.h"

namespace mixserve {
namespace {

using namespace cuda_test;

struct Case {
  SamplingParams params;
  std::vector<int32_t> prompt, output, suppressed;
  uint64_t seed = 0;
  int32_t sample_index = 0;
  SampleContext ctx() const { return {prompt, output, suppressed, seed, sample_index}; }
};

// Runs the device sampler on rows [R, V]; returns the ids and (in *processed) the logits
// after the penalties.
std::vector<int32_t> device_sample(const std::vector<float>& logits, int V,
                                   const std::vector<Case>& cases,
                                   std::vector<float>* processed = nullptr) {
  SamplingBatch batch;
  for (const Case& c : cases) append_sampling_row(c.params, c.ctx(), &batch);
  const int R = static_cast<int>(cases.size());
  DeviceBuffer d_logits = upload(logits);
  DeviceBuffer d_rows(sizeof(SamplingRow) * R);
  MIXSERVE_CUDA_CHECK(
      cudaMemcpy(d_rows.get(), batch.rows.data(), sizeof(SamplingRow) * R, cudaMemcpyHostToDevice));
  DeviceBuffer d_offs = upload(batch.entry_offsets);
  DeviceBuffer d_ents(std::max<size_t>(1, sizeof(PenaltyEntry) * batch.entries.size()));
  if (!batch.entries.empty()) {
    MIXSERVE_CUDA_CHECK(cudaMemcpy(d_ents.get(), batch.entries.data(),
                                   sizeof(PenaltyEntry) * batch.entries.size(),
                                   cudaMemcpyHostToDevice));
  }
  DeviceBuffer d_ids(sizeof(int32_t) * R);
  MIXSERVE_CUDA_CHECK(cuda::apply_penalties(d_logits.as<float>(), R, V, d_rows.as<SamplingRow>(),
                                            d_offs.as<int32_t>(), d_ents.as<PenaltyEntry>(),
                                            nullptr));
  MIXSERVE_CUDA_CHECK(cuda::sample_rows(d_logits.as<float>(), R, V, d_rows.as<SamplingRow>(),
                                        d_ids.as<int32_t>(), nullptr));
  if (processed) *processed = download<float>(d_logits, logits.size());
  return download<int32_t>(d_ids, size_t(R));
}

// True when the host's choice for this row sits within rounding of a boundary: the draw's
// target, top_p's threshold or min_p's threshold within 1e-8 (relative) of a cumulative
// probability / a candidate's probability. `row` is the penalised logits.
bool near_boundary(const std::vector<float>& row, const Case& c) {
  const SamplingParams& p = c.params;
  if (p.temperature == 0.0f) return false;
  const int V = static_cast<int>(row.size());
  std::vector<int32_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(),
            [&](int32_t a, int32_t b) { return row[a] != row[b] ? row[a] > row[b] : a < b; });
  size_t keep = (p.top_k > 0 && p.top_k < V) ? size_t(p.top_k) : size_t(V);
  std::vector<double> prob(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    prob[i] = std::exp(double(row[ids[i]] - row[ids[0]]) / p.temperature);
    total += prob[i];
  }
  const double eps = 1e-8;  // the device's fixed-point sums: ~1e-11 relative
  if (p.top_p < 1.0f) {
    double cum = 0;
    size_t i = 0;
    while (i < keep) {
      cum += prob[i++];
      if (std::abs(cum - double(p.top_p) * total) < eps * total) return true;
      if (cum >= double(p.top_p) * total) break;
    }
    keep = i;
  }
  if (p.min_p > 0.0f) {
    for (size_t i = 1; i < keep; ++i)
      if (std::abs(prob[i] - double(p.min_p)) < eps) return true;
    size_t i = 1;
    while (i < keep && prob[i] >= double(p.min_p)) ++i;
    keep = i;
  }
  const double kept = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
  const double target = counter_uniform(c.seed, c.sample_index, int64_t(c.output.size())) * kept;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += prob[i];
    if (std::abs(cum - target) < eps * kept) return true;
  }
  return false;
}

// Host reference over the same rows; counts mismatches not explained by near_boundary.
void compare(const std::vector<float>& logits, int V, const std::vector<Case>& cases,
             const char* what) {
  std::vector<float> processed;
  const std::vector<int32_t> got = device_sample(logits, V, cases, &processed);
  int near = 0;
  for (size_t r = 0; r < cases.size(); ++r) {
    std::vector<float> row(logits.begin() + r * V, logits.begin() + (r + 1) * V);
    SamplingParams greedy = cases[r].params;
    greedy.temperature = 0.0f;
    greedy.logprobs = -1;
    std::vector<float> penalised = row;
    (void)sample_token(penalised, greedy, cases[r].ctx());  // leaves the penalised row
    for (int v = 0; v < V; ++v) {
      ASSERT_EQ(processed[r * V + v], penalised[v])
          << what << ": row " << r << " logit " << v << " after the penalties";
    }
    const int32_t want = sample_token(row, cases[r].params, cases[r].ctx()).id;
    if (got[r] == want) continue;
    const bool excused = near_boundary(penalised, cases[r]);
    near += excused ? 1 : 0;
    EXPECT_TRUE(excused) << what << ": row " << r << " device " << got[r] << " host " << want
                         << " (temperature " << cases[r].params.temperature << ", top_k "
                         << cases[r].params.top_k << ", top_p " << cases[r].params.top_p
                         << ", min_p " << cases[r].params.min_p << ")";
  }
  EXPECT_LE(near, 1) << what;
}

std::vector<float> random_logits(int R, int V, float scale, int distinct = 0) {
  std::vector<float> v = random_vector(size_t(R) * V, scale);
  if (distinct > 0) {  // few distinct values: many exact ties
    for (float& x : v) x = std::round(x * distinct / (4 * scale)) / distinct;
  }
  return v;
}

TEST(CudaSampling, GreedyMatchesHostWithTies) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (int V : {7, 1000, 32000}) {
    for (int distinct : {0, 3}) {
      const int R = 33;
      const std::vector<float> logits = random_logits(R, V, 4.0f, distinct);
      std::vector<Case> cases(R);
      for (Case& c : cases) c.params.temperature = 0.0f;
      compare(logits, V, cases, distinct ? "greedy with ties" : "greedy");
    }
  }
}

TEST(CudaSampling, SeededDrawsMatchHost) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const int V = 32000, R = 96;
  struct Config {
    float temperature;
    int top_k;
    float top_p, min_p;
    float scale;
  };
  const Config configs[] = {
      {1.0f, -1, 1.0f, 0.0f, 1.0f},     {0.7f, 50, 1.0f, 0.0f, 3.0f},  {1.0f, -1, 0.9f, 0.0f, 2.0f},
      {1.3f, -1, 1.0f, 0.05f, 3.0f},    {0.8f, 40, 0.8f, 0.02f, 3.0f}, {1.0f, 1, 1.0f, 0.0f, 1.0f},
      {2.0f, 31999, 0.99f, 0.0f, 0.5f}, {0.5f, -1, 0.5f, 0.1f, 6.0f},
  };
  for (const Config& cfg : configs) {
    for (int distinct : {0, 8}) {
      const std::vector<float> logits = random_logits(R, V, cfg.scale, distinct);
      std::vector<Case> cases(R);
      for (int r = 0; r < R; ++r) {
        Case& c = cases[r];
        c.params.temperature = cfg.temperature;
        c.params.top_k = cfg.top_k;
        c.params.top_p = cfg.top_p;
        c.params.min_p = cfg.min_p;
        c.seed = rng()();
        c.sample_index = r % 5;
        c.output.assign(size_t(r % 13), 0);  // the draw counter is the output length
      }
      compare(logits, V, cases, "seeded draw");
    }
  }
}

TEST(CudaSampling, ManyDrawsOfOneRowMatchHost) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  // One peaked row drawn 256 times (different draw counters): every kept token shows up, so
  // a mask boundary off by one token would be caught.
  const int V = 32000, R = 256;
  std::vector<float> one = random_logits(1, V, 5.0f);
  std::vector<float> logits;
  for (int r = 0; r < R; ++r) logits.insert(logits.end(), one.begin(), one.end());
  for (auto [k, p, m] : {std::tuple{20, 1.0f, 0.0f}, {-1, 0.6f, 0.0f}, {-1, 1.0f, 0.2f}}) {
    std::vector<Case> cases(R);
    for (int r = 0; r < R; ++r) {
      cases[r].params.temperature = 1.0f;
      cases[r].params.top_k = k;
      cases[r].params.top_p = p;
      cases[r].params.min_p = m;
      cases[r].seed = 1234;
      cases[r].output.assign(size_t(r), 0);
    }
    compare(logits, V, cases, "many draws");
  }
}

TEST(CudaSampling, PenaltiesAndSuppressionMatchHost) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const int V = 32000, R = 24;
  const std::vector<float> logits = random_logits(R, V, 3.0f);
  std::uniform_int_distribution<int> tok(0, 199);  // a small range: repeats and overlaps
  std::vector<Case> cases(R);
  for (int r = 0; r < R; ++r) {
    Case& c = cases[r];
    c.params.temperature = r % 2 ? 0.0f : 0.9f;
    c.params.top_k = r % 3 == 0 ? 100 : -1;
    c.params.repetition_penalty = r % 4 == 0 ? 1.0f : 1.3f;
    c.params.presence_penalty = (r % 5) * 0.4f - 0.8f;
    c.params.frequency_penalty = r % 3 == 1 ? 0.7f : -0.3f;
    c.seed = rng()();
    for (int i = 0; i < 50; ++i) c.prompt.push_back(tok(rng()));
    for (int i = 0; i < r * 3; ++i) c.output.push_back(tok(rng()));
    if (r % 3 == 2) c.suppressed = {2, c.output.empty() ? 5 : c.output[0]};
  }
  compare(logits, V, cases, "penalties");
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
