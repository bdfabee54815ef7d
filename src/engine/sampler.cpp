#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "util/counter_rng.h"

namespace mixserve {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void apply_penalties(std::span<float> logits, const SamplingParams& p, const SampleContext& ctx) {
  const int32_t V = static_cast<int32_t>(logits.size());
  if (p.repetition_penalty != 1.0f) {
    std::unordered_set<int32_t> seen(ctx.prompt_ids.begin(), ctx.prompt_ids.end());
    seen.insert(ctx.output_ids.begin(), ctx.output_ids.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= V) continue;
      float& l = logits[size_t(id)];
      l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int32_t> counts;
    for (int32_t id : ctx.output_ids) ++counts[id];
    for (auto [id, c] : counts) {
      if (id < 0 || id >= V) continue;
      logits[size_t(id)] -= p.frequency_penalty * float(c) + p.presence_penalty;
    }
  }
}

int32_t argmax_lowest(std::span<const float> logits) {
  int32_t best = 0;  // strict '>' keeps the lowest id on ties
  for (int32_t i = 1; i < int32_t(logits.size()); ++i)
    if (logits[size_t(i)] > logits[size_t(best)]) best = i;
  return best;
}

}  // namespace

double counter_uniform(uint64_t seed, int32_t sample_index, int64_t step) {
  return counter_uniform_draw(seed, sample_index, step);  // shared with the CUDA sampler
}

TokenLogprobs compute_logprobs(std::span<const float> logits, int32_t chosen, int32_t k) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits) sum += std::exp(double(l) - mx);
  const float log_z = mx + float(std::log(sum));
  TokenLogprobs out;
  out.id = chosen;
  out.logprob = logits[size_t(chosen)] - log_z;
  if (k > 0) {
    std::vector<int32_t> ids(logits.size());
    std::iota(ids.begin(), ids.end(), 0);
    const size_t kk = std::min(size_t(k), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + kk, ids.end(), [&](int32_t a, int32_t b) {
      return logits[size_t(a)] != logits[size_t(b)] ? logits[size_t(a)] > logits[size_t(b)]
                                                    : a < b;
    });
    for (size_t i = 0; i < kk; ++i) out.top.push_back({ids[i], logits[size_t(ids[i])] - log_z});
  }
  return out;
}

SampleResult sample_token(std::span<float> logits, const SamplingParams& p,
                          const SampleContext& ctx) {
  const int32_t V = static_cast<int32_t>(logits.size());

  std::vector<float> raw;
  if (p.logprobs >= 0) raw.assign(logits.begin(), logits.end());

  apply_penalties(logits, p, ctx);
  for (int32_t id : ctx.suppressed_ids)
    if (id >= 0 && id < V) logits[size_t(id)] = kNegInf;

  SampleResult res;
  if (p.temperature == 0.0f) {
    res.id = argmax_lowest(logits);
  } else {
    // Candidates sorted by logit (ties to the lowest id); truncation keeps a prefix of them.
    std::vector<int32_t> ids(static_cast<size_t>(V));
    std::iota(ids.begin(), ids.end(), 0);
    auto before = [&](int32_t a, int32_t b) {
      return logits[size_t(a)] != logits[size_t(b)] ? logits[size_t(a)] > logits[size_t(b)]
                                                    : a < b;
    };
    size_t keep = size_t(V);
    if (p.top_k > 0 && p.top_k < V) {
      keep = size_t(p.top_k);
      std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), before);
    } else {
      std::sort(ids.begin(), ids.end(), before);
    }
    const float mx = logits[size_t(ids[0])];
    std::vector<double> prob(keep);
    double total = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      prob[i] = std::exp(double(logits[size_t(ids[i])] - mx) / p.temperature);
      total += prob[i];
    }
    if (p.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p
      double cum = 0.0;
      size_t i = 0;
      while (i < keep) {
        cum += prob[i++];
        if (cum >= double(p.top_p) * total) break;
      }
      keep = i;
    }
    if (p.min_p > 0.0f) {  // prob[0] is the largest
      size_t i = 1;
      while (i < keep && prob[i] >= double(p.min_p) * prob[0]) ++i;
      keep = i;
    }
    total = std::accumulate(prob.begin(), prob.begin() + keep, 0.0);
    const double u = counter_uniform(ctx.seed, ctx.sample_index, int64_t(ctx.output_ids.size()));
    double target = u * total, cum = 0.0;
    res.id = ids[keep - 1];
    for (size_t i = 0; i < keep; ++i) {
      cum += prob[i];
      if (target < cum) {
        res.id = ids[i];
        break;
      }
    }
  }
  if (p.logprobs >= 0) res.logprobs = compute_logprobs(raw, res.id, p.logprobs);
  return res;
}

}  // namespace mixserve
