#include "backend/cpu/cpu_moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/cpu_ops.h"

namespace mixserve::cpu {
namespace {

// y = w2(silu(w1 x) * (w3 x)) for the n gathered rows of x.  x: [n, H], y: [n, H].
void expert_mlp(const float* x, int n, int H, int F, const CpuExpertWeights& ew, float* y,
                int num_threads) {
  std::vector<float> gate(size_t(n) * F), up(size_t(n) * F);
  linear(x, n, ew.w1.data(), H, F, gate.data(), num_threads);
  linear(x, n, ew.w3.data(), H, F, up.data(), num_threads);
  for (size_t i = 0; i < gate.size(); ++i) gate[i] = silu(gate[i]) * up[i];
  linear(gate.data(), n, ew.w2.data(), F, H, y, num_threads);
}

}  // namespace

Routing route_tokens(const float* x, int T, const ModelConfig& c, const CpuLayerWeights& layer,
                     int num_threads) {
  const int E = c.num_local_experts, K = c.num_experts_per_tok, H = c.hidden_size;
  std::vector<float> logits(size_t(T) * E);
  linear(x, T, layer.router.data(), H, E, logits.data(), num_threads);
  Routing r;
  r.experts.resize(size_t(T) * K);
  r.weights.resize(size_t(T) * K);
  std::vector<float> probs(E);
  std::vector<int> order(E);
  for (int t = 0; t < T; ++t) {
    const float* lt = logits.data() + size_t(t) * E;
    const float max_logit = *std::max_element(lt, lt + E);
    float sum = 0.0f;
    for (int e = 0; e < E; ++e) {
      probs[e] = std::exp(lt[e] - max_logit);
      sum += probs[e];
    }
    for (int e = 0; e < E; ++e) probs[e] /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return probs[a] > probs[b]; });
    float top_sum = 0.0f;
    for (int k = 0; k < K; ++k) top_sum += probs[order[k]];
    for (int k = 0; k < K; ++k) {
      r.experts[size_t(t) * K + k] = order[k];
      r.weights[size_t(t) * K + k] = probs[order[k]] / top_sum;
    }
  }
  return r;
}

void feed_forward(const float* x, int T, const ModelConfig& c, const CpuLayerWeights& layer,
                  float* out, int num_threads, int expert_begin) {
  const int H = c.hidden_size, F = c.intermediate_size;
  if (!c.moe) {
    expert_mlp(x, T, H, F, layer.experts[0], out, num_threads);
    return;
  }
  const int K = c.num_experts_per_tok;
  const int expert_end = expert_begin + static_cast<int>(layer.experts.size());
  const Routing routing = route_tokens(x, T, c, layer, num_threads);
  std::fill(out, out + size_t(T) * H, 0.0f);
  std::vector<int> rows;
  std::vector<float> row_weights, gathered, y;
  // Expert by expert, over the tokens routed to it: a token's arithmetic is the same whatever
  // else is in the batch, and its contributions arrive in ascending expert order.
  for (int e = expert_begin; e < expert_end; ++e) {
    rows.clear();
    row_weights.clear();
    for (int t = 0; t < T; ++t) {
      for (int k = 0; k < K; ++k) {
        if (routing.experts[size_t(t) * K + k] != e) continue;
        rows.push_back(t);
        row_weights.push_back(routing.weights[size_t(t) * K + k]);
      }
    }
    if (rows.empty()) continue;  // no token chose this expert
    const int n = static_cast<int>(rows.size());
    gathered.resize(size_t(n) * H);
    y.resize(size_t(n) * H);
    for (int i = 0; i < n; ++i) {
      std::copy_n(x + size_t(rows[i]) * H, H, gathered.data() + size_t(i) * H);
    }
    expert_mlp(gathered.data(), n, H, F, layer.experts[e - expert_begin], y.data(), num_threads);
    for (int i = 0; i < n; ++i) {
      float* o = out + size_t(rows[i]) * H;
      const float* yi = y.data() + size_t(i) * H;
      for (int h = 0; h < H; ++h) o[h] += yi[h] * row_weights[i];
    }
  }
}

}  // namespace mixserve::cpu
