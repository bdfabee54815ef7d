// Decode-only steps: the plan padded to a bucket of tokens and a power-of-two block-table
// width, uploaded (pinned buffer -> the bucket's own device buffer) outside the graph, then
// the model either replayed from a CUDA graph or, with enforce_eager, enqueued kernel by
// kernel. Both modes compute the same padded step, so they give bit-identical logits.
//
// Padding token t >= T: token 0 at position 0, its own sequence t, a block table of block 0
// (valid memory, read only) and slot -1 (rope_write_kv writes no KV for it). Its rows are
// computed and never read: every kernel of the step is row-independent (the MoE capacity C
// is the bucket, so padding tokens cannot crowd a real token out of an expert).
#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "util/error.h"

namespace mixserve::cuda {
namespace {

constexpr int kMaxBucket = 512;

int next_pow2(int n) {
  int b = 1;
  while (b < n) b *= 2;
  return b;
}

}  // namespace

CudaBackend::DecodeGraph::~DecodeGraph() {
  if (exec) cudaGraphExecDestroy(exec);
}

int CudaBackend::num_decode_graphs() const {
  return static_cast<int>(std::count_if(graphs_.begin(), graphs_.end(),
                                        [](const auto& kv) { return kv.second.exec != nullptr; }));
}

int CudaBackend::decode_bucket(const BatchPlan& plan) const {
  const int T = plan.num_tokens();
  if (T != plan.num_seqs() || static_cast<int>(plan.logits_rows.size()) != T) return 0;
  for (int t = 0; t < T; ++t) {
    if (plan.logits_rows[t] != t || plan.seq_offsets[t] != t) return 0;
  }
  const int bucket = next_pow2(T);
  if (bucket > kMaxBucket) return 0;
  if (config_.moe && bucket * config_.num_experts_per_tok > options_.moe_padded_max_rows) return 0;
  // FP8 MoE layers are sync-free only where the grouped FP8 GEMMs exist for the bucket.
  if (options_.fp8 && config_.moe && fp8_grouped_mode(bucket) == Fp8Grouped::kNone) return 0;
  return bucket;
}

void CudaBackend::run_decode(const BatchPlan& plan, int bucket) {
  const int T = plan.num_tokens(), Tb = bucket;
  const int K = config_.moe ? config_.num_experts_per_tok : 1;
  const int E = config_.moe ? config_.num_local_experts : 1;
  const int G = std::min(E, Tb * K);
  // The grouped MoE's G * Tb rows; the graph's lm_head writes all Tb logits rows.
  ensure_workspace(std::max(Tb, (G * Tb + K - 1) / K), Tb);
  const int B = next_pow2(std::max(1, plan.max_blocks_per_seq)), Bp = plan.max_blocks_per_seq;
  // int32 tokens, positions, seq_of_token, logits rows [Tb] and block tables [Tb, B], then
  // the int64 slots [Tb] at an 8-byte boundary.
  const size_t ints = 4 * size_t(Tb) + size_t(Tb) * B;
  const size_t slots_at = (ints * 4 + 7) / 8 * 8;
  const size_t bytes = slots_at + size_t(Tb) * 8;
  if (plan_host_.bytes() < bytes) {
    MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
    plan_host_.reset(bytes * 2);
    plan_dev_.reset(bytes * 2);
  }
  int32_t* h = plan_host_.as<int32_t>();
  int32_t *tok = h, *pos = h + Tb, *seq = h + 2 * Tb, *rows = h + 3 * Tb, *tab = h + 4 * Tb;
  int64_t* slots = plan_host_.as<int64_t>(slots_at);
  for (int t = 0; t < Tb; ++t) {
    const bool real = t < T;
    tok[t] = real ? plan.token_ids[t] : 0;
    pos[t] = real ? plan.positions[t] : 0;
    seq[t] = t;
    rows[t] = t;
    slots[t] = real ? plan.slot_mapping[t] : -1;
    for (int b = 0; b < B; ++b) {
      tab[size_t(t) * B + b] = !real ? 0 : b < Bp ? plan.block_tables[size_t(t) * Bp + b] : -1;
    }
  }
  DecodeGraph& g = graphs_[{Tb, B}];
  if (g.plan_dev.get() == nullptr) g.plan_dev.reset(bytes);
  MIXSERVE_CUDA_CHECK(cudaMemcpyAsync(g.plan_dev.get(), h, bytes, cudaMemcpyHostToDevice, stream_));
  int32_t* d = g.plan_dev.as<int32_t>();
  plan_ = {d, d + Tb, d + 2 * Tb, d + 4 * Tb, d + 3 * Tb, g.plan_dev.as<int64_t>(slots_at)};
  // Attention: the split-K kernel for every token, its split planned for the bucket's widest
  // table (B blocks), so the captured graph is right for every step of this bucket.
  attn_step_ = AttentionArgs{};
  attn_step_.num_seqs = Tb;
  attn_step_.max_q_len = 1;
  attn_step_.num_decode_tokens = Tb;
  attn_step_.max_context = B * kv_spec_.block_size;
  if (g.exec != nullptr) {
    MIXSERVE_CUDA_CHECK(cudaGraphLaunch(g.exec, stream_));
    return;
  }
  // This step runs eagerly (which also settles cuBLASLt's algorithm choices outside any
  // capture); the graph is captured afterwards and replayed from the next step of this shape.
  enqueue_forward(Tb, Tb, B);
  if (!graphs_allowed()) return;
  cudaGraph_t graph = nullptr;
  MIXSERVE_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue_forward(Tb, Tb, B);
  } catch (...) {
    (void)cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  MIXSERVE_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  const cudaError_t st = cudaGraphInstantiate(&g.exec, graph, 0);
  cudaGraphDestroy(graph);
  MIXSERVE_CUDA_CHECK(st);
}

}  // namespace mixserve::cuda
