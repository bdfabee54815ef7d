// make_shard / local_config: the index arithmetic of tensor and expert parallelism
// (semantics in sharding.h).
//
// Dense models (Mistral / Llama, one "expert") have nothing to distribute whole, so
// --expert-parallel on them is an error that says to drop the flag: their MLP is already split
// by --tensor-parallel alone. Failing beats a silent fallback that would make a user believe
// expert parallelism ran.
#include "dist/sharding.h"

#include "util/error.h"

namespace mixserve::dist {

ModelConfig ShardSpec::local_config(const ModelConfig& full) const {
  ModelConfig c = full;
  c.head_dim = full.head_dim > 0 ? full.head_dim : full.hidden_size / full.num_attention_heads;
  c.num_attention_heads = num_q_heads;
  c.num_key_value_heads = num_kv_heads;
  c.intermediate_size = ffn_size;
  return c;
}

ShardSpec make_shard(const ModelConfig& config, const ParallelConfig& parallel, int rank) {
  const int N = parallel.tensor_parallel;
  MIXSERVE_CHECK(N >= 1, "--tensor-parallel ", N, " must be at least 1");
  MIXSERVE_CHECK(rank >= 0 && rank < N, "rank ", rank, " is outside [0, ", N,
                 ") for --tensor-parallel ", N);
  const int Hq = config.num_attention_heads, Hkv = config.num_key_value_heads;
  const int F = config.intermediate_size;
  MIXSERVE_CHECK(Hq > 0 && Hkv > 0 && Hq % Hkv == 0, "model config: num_attention_heads (", Hq,
                 ") must be a positive multiple of num_key_value_heads (", Hkv, ")");
  MIXSERVE_CHECK(Hq % N == 0, "--tensor-parallel ", N, ": num_attention_heads (", Hq,
                 ") is not divisible by ", N, "; use a tensor-parallel size that divides ", Hq);
  MIXSERVE_CHECK(Hkv % N == 0 || N % Hkv == 0, "--tensor-parallel ", N,
                 ": num_key_value_heads (", Hkv, ") and ", N,
                 " must divide one another (KV heads are split, or replicated over ranks)");

  ShardSpec s;
  s.rank = rank;
  s.size = N;
  s.expert_parallel = parallel.expert_parallel;
  s.num_q_heads = Hq / N;
  s.q_head_begin = rank * s.num_q_heads;
  if (Hkv % N == 0) {
    s.num_kv_heads = Hkv / N;
    s.kv_head_begin = rank * s.num_kv_heads;
  } else {
    // N = m * Hkv: the query heads of one KV head's group span m ranks; each holds a copy.
    s.num_kv_heads = 1;
    s.kv_head_begin = s.q_head_begin / (Hq / Hkv);
  }

  const int E = config.moe ? config.num_local_experts : 1;
  if (parallel.expert_parallel) {
    MIXSERVE_CHECK(config.moe, "--expert-parallel: model_type \"", config.model_type,
                   "\" is a dense model (no experts to place on ranks); drop --expert-parallel, "
                   "--tensor-parallel alone splits its MLP");
    MIXSERVE_CHECK(E % N == 0, "--expert-parallel with --tensor-parallel ", N,
                   ": num_local_experts (", E, ") is not divisible by ", N,
                   "; use a size that divides ", E, " or drop --expert-parallel");
    s.num_experts = E / N;
    s.expert_begin = rank * s.num_experts;
    s.ffn_begin = 0;
    s.ffn_size = F;
  } else {
    MIXSERVE_CHECK(F % N == 0, "--tensor-parallel ", N, ": intermediate_size (", F,
                   ") is not divisible by ", N, "; use a tensor-parallel size that divides ", F,
                   " or --expert-parallel");
    s.ffn_size = F / N;
    s.ffn_begin = rank * s.ffn_size;
    s.expert_begin = 0;
    s.num_experts = E;
  }
  return s;
}

}  // namespace mixserve::dist
