// CUDA graphs for decode steps and the engine on CUDA: graph replay gives bit-identical logits
// to the eager (same padded) step at awkward batch sizes 1, 3, 17 (buckets 1, 4, 32, so
// padding rows are computed too), replays are repeatable, and the engine's greedy (and
// seeded) tokens are the same with graphs or --enforce-eager, device or host sampling.
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "cuda_plan_builder.h"
#include "engine/engine.h"
#include "model/presets.h"

namespace mixserve {
namespace {

using namespace cuda_test;

constexpr int kBlockSize = 16, kNumBlocks = 256;

std::unique_ptr<cuda::CudaBackend> tiny_backend(bool eager, bool device_sampling = true) {
  cuda::CudaBackendOptions o;
  o.max_num_tokens = 64;
  o.enforce_eager = eager;
  o.device_sampling = device_sampling;
  auto b = cuda::CudaBackend::synthetic(preset_from_spec("tiny"), 0, o);
  b->allocate_kv_cache({kNumBlocks, kBlockSize});
  return b;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST(CudaGraph, ReplayIsBitIdenticalToEagerAtAwkwardBatchSizes) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  auto graph = tiny_backend(false), eager = tiny_backend(true);
  const int V = graph->config().vocab_size;
  std::uniform_int_distribution<int> tok(0, V - 1);
  for (int batch : {1, 3, 17}) {
    // Prefill each sequence's context (20..40 tokens, plus 3 slots the decode steps then
    // overwrite, so that the block tables cover them), then three decode steps.
    std::vector<SeqSpec> seqs;
    for (int s = 0; s < batch; ++s) seqs.push_back({23 + (s * 7) % 21, 23 + (s * 7) % 21});
    std::mt19937 gen(batch);
    BatchPlan prefill = build_plan(seqs, kBlockSize, kNumBlocks, gen);
    for (int32_t& id : prefill.token_ids) id = tok(rng());
    std::vector<float> lg(prefill.logits_rows.size() * V), le(lg.size());
    graph->forward(prefill, lg);
    eager->forward(prefill, le);
    ASSERT_TRUE(bit_equal(lg, le)) << "prefill, batch " << batch;
    for (int step = 0; step < 3; ++step) {
      BatchPlan d = prefill;  // same block tables; one new token per sequence
      d.token_ids.clear();
      d.positions.clear();
      d.slot_mapping.clear();
      d.logits_rows.clear();
      d.seq_offsets = {0};
      for (int s = 0; s < batch; ++s) {
        const int pos = seqs[s].context - 3 + step;
        d.token_ids.push_back(tok(rng()));
        d.positions.push_back(pos);
        const int32_t block = d.block_tables[size_t(s) * d.max_blocks_per_seq + pos / kBlockSize];
        ASSERT_GE(block, 0) << "the test's block tables are too short";
        d.slot_mapping.push_back(int64_t{block} * kBlockSize + pos % kBlockSize);
        d.logits_rows.push_back(s);
        d.seq_offsets.push_back(s + 1);
        d.context_lens[s] = pos + 1;
      }
      std::vector<float> g(size_t(batch) * V), e(g.size());
      graph->forward(d, g);
      eager->forward(d, e);
      ASSERT_TRUE(bit_equal(g, e)) << "decode step " << step << ", batch " << batch;
      // Replaying the same step (same KV writes) gives the same logits again.
      std::vector<float> again(g.size());
      graph->forward(d, again);
      ASSERT_TRUE(bit_equal(g, again)) << "replay, batch " << batch;
      for (float x : g) ASSERT_TRUE(std::isfinite(x));
    }
    // The bucket's graph was captured after its first step and replayed since (a prefill
    // that grows the workspace drops earlier graphs, so count only this batch's).
    EXPECT_GE(graph->num_decode_graphs(), 1) << "batch " << batch;
    EXPECT_EQ(eager->num_decode_graphs(), 0) << "batch " << batch;
  }
}

// The engine end to end: 12 requests of different prompt lengths, 10 tokens each.
std::vector<std::vector<int32_t>> run_engine(std::unique_ptr<Backend> backend, float temperature,
                                             bool async = false) {
  EngineConfig cfg;
  cfg.num_kv_blocks = kNumBlocks;
  cfg.async_scheduling = async;
  Engine engine(std::move(backend), nullptr, cfg);
  std::vector<Request> reqs;
  for (int i = 0; i < 12; ++i) {
    Request r;
    for (int j = 0; j < 5 + 3 * i; ++j) r.prompt_ids.push_back(3 + (i * 131 + j * 17) % 400);
    r.params.temperature = temperature;
    r.params.top_p = 0.9f;
    r.params.seed = 42 + i;
    r.params.max_tokens = 10;
    r.params.ignore_eos = true;
    r.params.repetition_penalty = i % 2 ? 1.2f : 1.0f;
    if (i % 3 == 0) r.params.logprobs = 2;
    reqs.push_back(std::move(r));
  }
  std::vector<std::vector<int32_t>> out;
  for (const GenerateResult& g : engine.generate(std::move(reqs))) {
    out.push_back(g.samples.at(0).token_ids);
    EXPECT_EQ(out.back().size(), 10u);
  }
  return out;
}

TEST(CudaGraph, EngineTokensSameWithGraphsEagerDeviceAndHostSampling) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (float temperature : {0.0f, 0.8f}) {
    const auto graphs_device = run_engine(tiny_backend(false, true), temperature);
    const auto eager_device = run_engine(tiny_backend(true, true), temperature);
    const auto graphs_host = run_engine(tiny_backend(false, false), temperature);
    EXPECT_EQ(graphs_device, eager_device) << "temperature " << temperature;
    EXPECT_EQ(graphs_device, graphs_host) << "temperature " << temperature;
    // Async scheduling (the CLI's default): the same tokens through submit / collect.
    EXPECT_EQ(run_engine(tiny_backend(false, true), temperature, true), graphs_device)
        << "temperature " << temperature;
  }
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
