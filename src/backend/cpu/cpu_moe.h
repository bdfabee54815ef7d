// The feed-forward block of the CPU reference: Mixtral's sparse MoE (MixtralSparseMoeBlock) and
// the dense MLP of Mistral / Llama as its one-expert case.
//
// Shapes: T = tokens, H = hidden, E = experts, K = experts per token, F = intermediate size.
#pragma once

#include <vector>

#include "backend/cpu/cpu_weights.h"
#include "model/config.h"

namespace mixserve::cpu {

struct Routing {
  std::vector<int> experts;    // [T, K] chosen experts, highest probability first
  std::vector<float> weights;  // [T, K] their probabilities, renormalised to sum to 1
};

// Router: softmax over all E logits (x . router^T) in float32, the top K (ties: the lower
// expert index first, as torch.topk), then the K probabilities divided by their sum.
//   x: [T, H] (post-attention-normed hidden states)
Routing route_tokens(const float* x, int T, const ModelConfig& config,
                     const CpuLayerWeights& layer, int num_threads);

// out[t] = sum over t's chosen experts e, in ascending e (the order transformers' index_add_
// accumulates in), of weight * w2(silu(w1 x) * (w3 x)). Dense models: out = the one MLP.
// An expert-parallel shard holds experts [expert_begin, expert_begin + layer.experts.size())
// and adds only theirs (the router is whole); a tensor-parallel shard's experts have F / N rows,
// so out is its partial sum. Either way an all-reduce over the ranks completes out.
//   x, out: [T, H]
void feed_forward(const float* x, int T, const ModelConfig& config,
                  const CpuLayerWeights& layer, float* out, int num_threads,
                  int expert_begin = 0);

}  // namespace mixserve::cpu
