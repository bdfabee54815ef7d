// CudaBackend end to end against CpuBackend on the same checkpoints (written by make_model):
// logits within the model tolerance for every tiny preset, synthetic weights equal to the
// written checkpoint, and greedy decoding of 16 tokens identical (up to a checked near-tie).
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <algorithm>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_plan_builder.h"
#include "cuda_router_gaps.h"
#include "model/loader.h"
#include "model/make_model.h"
#include "model/presets.h"
#include "temp_dir.h"

namespace mixserve {
namespace {

using namespace cuda_test;

constexpr int kBlockSize = 16, kNumBlocks = 128;

cuda::CudaBackendOptions small_options(DType dt) {
  cuda::CudaBackendOptions o;
  o.dtype = dt;
  o.max_num_tokens = 64;  // grows on demand
  return o;
}

// Two steps over the same shuffled blocks: prefills of 5, 37 and 23 tokens, then decodes of
// the first two and a 17-token chunk of the third (40 tokens of context, crossing blocks).
// Every row's logits are compared: rows at or after a token of their sequence where the CPU saw
// a router near-tie (cuda_router_gaps.h) only against kModelRowMax, all others against `tol`.
void compare_steps(const std::filesystem::path& model, Backend& cpu, Backend& gpu, double tol,
                   const std::string& label) {
  const int V = cpu.config().vocab_size;
  RouterGapReference gaps_ref = RouterGapReference::for_model(model, kBlockSize, kNumBlocks);
  std::mt19937 gen1 = rng(), gen2 = gen1;  // the same shuffle: the same blocks in both steps
  rng().discard(1);
  const std::vector<std::vector<SeqSpec>> steps = {{{5, 5}, {37, 37}, {23, 23}},
                                                   {{6, 1}, {38, 1}, {40, 17}}};
  // Per sequence: the first position whose token saw a router near-tie (INT_MAX: none yet).
  std::vector<int> tie_pos(3, std::numeric_limits<int>::max());
  for (int step = 0; step < 2; ++step) {
    BatchPlan plan = build_plan(steps[step], kBlockSize, kNumBlocks, step == 0 ? gen1 : gen2);
    plan.token_ids = random_tokens(plan.num_tokens(), V);
    const size_t n = plan.logits_rows.size() * size_t(V);
    std::vector<float> ref(n), got(n, NAN);
    cpu.forward(plan, ref);
    gpu.forward(plan, got);
    const RowErrors r = row_errors(plan, gaps_ref.run(plan), got, ref, V, tie_pos);
    std::printf(
        "[cuda e2e] %s step %d: %d tokens, logits relative L2 error %.3g; worst row %.3g "
        "(%d rows after a router near-tie: worst %.3g)\n",
        label.c_str(), step, plan.num_tokens(), rel_l2(got, ref), r.worst_clean, r.tie_rows,
        r.worst_tie);
    EXPECT_LT(r.worst_clean, tol) << label << " step " << step;
    EXPECT_LT(r.worst_tie, kModelRowMax) << label << " step " << step;
  }
}

TEST(CudaBackend, LogitsMatchCpuOnTinyPresets) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  testing::TempDir dir("cuda_e2e");
  for (const std::string preset : {"tiny", "tiny-e8", "tiny-d128", "tiny-dense"}) {
    const auto path = write_model(dir, preset);
    auto cpu = CpuBackend::load(path, 0);
    cpu->allocate_kv_cache({kNumBlocks, kBlockSize});
    for (DType dt : {DType::kBF16, DType::kF16}) {
      auto gpu = cuda::CudaBackend::load(path, small_options(dt));
      EXPECT_GT(gpu->kv_cache_spec().num_blocks, 0) << "KV budget from free memory";
      gpu->allocate_kv_cache({kNumBlocks, kBlockSize});
      compare_steps(path, *cpu, *gpu, dt == DType::kBF16 ? kBf16ModelTol : kFp16ModelTol,
                    preset + (dt == DType::kBF16 ? " bf16" : " fp16"));
    }
  }
}

TEST(CudaBackend, SyntheticWeightsEqualWrittenCheckpoint) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  testing::TempDir dir("cuda_synth");
  const auto path = write_model(dir, "tiny");
  auto loaded = cuda::CudaBackend::load(path, small_options(DType::kBF16));
  auto synth =
      cuda::CudaBackend::synthetic(preset_from_spec("tiny"), 0, small_options(DType::kBF16));
  loaded->allocate_kv_cache({kNumBlocks, kBlockSize});
  synth->allocate_kv_cache({kNumBlocks, kBlockSize});
  BatchPlan plan = build_plan({{23, 23}, {7, 7}}, kBlockSize, kNumBlocks, rng());
  plan.token_ids = random_tokens(plan.num_tokens(), loaded->config().vocab_size);
  const size_t n = plan.logits_rows.size() * size_t(loaded->config().vocab_size);
  std::vector<float> a(n), b(n);
  loaded->forward(plan, a);
  synth->forward(plan, b);
  EXPECT_EQ(a, b) << "same weights, same kernels: bit-identical logits";
}

// A workspace sized for fewer logits rows (max_num_seqs) than a step has grows for it: the
// logits equal those of a backend sized for one row per token, first step and after.
TEST(CudaBackend, LogitsRowsBeyondMaxNumSeqsGrowTheWorkspace) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  testing::TempDir dir("cuda_rows");
  const auto path = write_model(dir, "tiny");
  cuda::CudaBackendOptions small = small_options(DType::kBF16);
  small.max_num_seqs = 1;
  auto sized = cuda::CudaBackend::load(path, small);
  auto full = cuda::CudaBackend::load(path, small_options(DType::kBF16));
  sized->allocate_kv_cache({kNumBlocks, kBlockSize});
  full->allocate_kv_cache({kNumBlocks, kBlockSize});
  std::mt19937 gen = rng();
  for (const std::vector<SeqSpec>& seqs : std::vector<std::vector<SeqSpec>>{
           {{9, 9}}, {{23, 23}, {7, 7}, {12, 12}}, {{4, 4}}}) {
    BatchPlan plan = build_plan(seqs, kBlockSize, kNumBlocks, gen);
    plan.token_ids = random_tokens(plan.num_tokens(), full->config().vocab_size);
    const size_t n = plan.logits_rows.size() * size_t(full->config().vocab_size);
    std::vector<float> a(n, NAN), b(n);
    sized->forward(plan, a);
    full->forward(plan, b);
    EXPECT_EQ(a, b) << seqs.size() << " logits rows";
  }
}

// Greedy decode: prefill the prompt, then one token per step, on one backend.
std::vector<int32_t> greedy(Backend& be, const std::vector<int32_t>& prompt, int steps,
                            const std::vector<int32_t>& blocks,
                            std::vector<std::vector<float>>* all_logits) {
  const int V = be.config().vocab_size;
  return greedy_decode(
      [&](const BatchPlan& p) {
        std::vector<float> logits(V);
        be.forward(p, logits);
        return logits;
      },
      prompt, steps, blocks, kBlockSize, all_logits);
}

// Greedy tokens equal the CPU's. A divergence must be explained: a near-tie of the CPU's
// final logits (within the bf16 logit error), or a router near-tie (cuda_router_gaps.h) on the
// CPU's greedy path at or before the divergence — bf16 may send that token to another expert,
// which changes its logits by far more than rounding (seen about once in 100 random models).
TEST(CudaBackend, GreedyDecodeMatchesCpu) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  testing::TempDir dir("cuda_greedy");
  for (const std::string preset : {"tiny", "tiny-dense"}) {
    const auto path = write_model(dir, preset);
    auto cpu = CpuBackend::load(path, 0);
    auto gpu = cuda::CudaBackend::load(path, small_options(DType::kBF16));
    cpu->allocate_kv_cache({kNumBlocks, kBlockSize});
    gpu->allocate_kv_cache({kNumBlocks, kBlockSize});
    RouterGapReference gaps_ref = RouterGapReference::for_model(path, kBlockSize, kNumBlocks);
    std::vector<int32_t> blocks(kNumBlocks);
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng());
    blocks.resize(4);
    const std::vector<int32_t> prompt = random_tokens(21, cpu->config().vocab_size);
    std::vector<std::vector<float>> cpu_logits;
    std::vector<float> step_gap;  // smallest router gap of each step's tokens, CPU path
    const auto ref = greedy_decode(
        [&](const BatchPlan& p) {
          std::vector<float> logits(cpu->config().vocab_size);
          cpu->forward(p, logits);
          step_gap.push_back(gaps_ref.min_gap(p));
          return logits;
        },
        prompt, 16, blocks, kBlockSize, &cpu_logits);
    const auto got = greedy(*gpu, prompt, 16, blocks, nullptr);
    size_t diverge = 0;
    while (diverge < ref.size() && got[diverge] == ref[diverge]) ++diverge;
    if (diverge == ref.size()) {
      std::printf("[cuda e2e] %s greedy: 16 tokens identical\n", preset.c_str());
      continue;
    }
    // Token `diverge` is sampled from step `diverge`'s logits (step 0: the prompt).
    const float router_gap =
        *std::min_element(step_gap.begin(), step_gap.begin() + diverge + 1);
    const std::vector<float>& l = cpu_logits[diverge];
    const float gap = l[ref[diverge]] - l[got[diverge]];
    std::printf(
        "[cuda e2e] %s greedy: identical for %zu tokens, then %d instead of %d (CPU logit gap "
        "%.4f; smallest router gap on the CPU's path so far %.2e)\n",
        preset.c_str(), diverge, got[diverge], ref[diverge], gap, router_gap);
    EXPECT_TRUE(gap < kGreedyTieLogitGap || router_gap < kRouterTieGap)
        << preset << ": greedy token " << diverge << " differs with neither a near-tie of the "
        << "CPU's logits (gap " << gap << ") nor of a router (gap " << router_gap << ")";
  }
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
