// FP8 end to end on the tiny presets against the float32 CPU backend: teacher-forced
// log-probabilities of the next token (max and mean |Δ logprob|, top-1 agreement) for FP8
// weights only (the CPU on the quantized checkpoint), W8A8, an FP8 KV cache, and all
// together; the bounds observed on an H100 (docs/cuda-backend.md, "FP8") with margin. Also: an FP8
// checkpoint written by `mixserve quantize`, --quantization fp8 on the bf16 checkpoint and
// synthetic FP8 weights give bit-identical logits.
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <algorithm>
#include <cstdio>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "cuda_plan_builder.h"
#include "model/make_model.h"
#include "model/presets.h"
#include "model/quantize_checkpoint.h"
#include "temp_dir.h"

namespace mixserve {
namespace {

using namespace cuda_test;

constexpr int kBlockSize = 16, kNumBlocks = 64;

// Bounds per configuration, from one H100 run over the four tiny presets (docs/cuda-backend.md,
// "FP8": mean |Δ| <= 0.049 / 0.354 / 0.490 / 0.207 / 0.487, top-1 >= 99.2 / 81.5 / 82.3 /
// 88.7 / 77.4%, max |Δ| <= 2.9 / 5.0 / 4.7 / 5.1 / 5.0) with room for other random tokens.
// These random models are harsh: lm_head gain 7 gives peaked logits, and the largest |Δ| is
// a router near-tie sending a token to another expert (bf16 sees those too), so the max gets a
// loose bound and the mean and top-1 carry the check: seed 3939291309 gave max 8.6 (fp8
// weights only: the CPU alone) and 9.7 (W8A8) on tiny-e8 with means 0.38 / 0.55; bf16 itself
// reached 4.92 on tiny-e8 (seed 2399333608) and failed a 5.0 bound on another seed, so bf16's
// max is as loose as FP8's. A wrong scale or layout gives a mean of several nats and top-1
// near 0.
struct Bound {
  const char* name;
  double max_dlogprob;
  double mean_dlogprob;
  double min_top1;
};
constexpr Bound kBf16{"bf16", 12.0, 0.1, 0.95};
constexpr Bound kWeightsOnly{"fp8 weights only", 12.0, 0.6, 0.7};
constexpr Bound kW8A8{"fp8 W8A8", 12.0, 0.8, 0.7};
constexpr Bound kKvOnly{"fp8 KV only", 12.0, 0.4, 0.8};
constexpr Bound kAll{"fp8 W8A8 + KV", 12.0, 0.8, 0.65};

struct Agreement {
  double max_dlogprob = 0, mean_dlogprob = 0, top1 = 0;
};

// One prefill step of three sequences (40, 64 and 23 tokens); logits of every position.
struct TeacherForced {
  BatchPlan plan;
  explicit TeacherForced(int V) {
    plan = build_plan({{40, 40}, {64, 64}, {23, 23}}, kBlockSize, kNumBlocks, rng());
    for (int32_t& id : plan.token_ids) id = 3 + int(rng()() % (V - 3));
  }
  std::vector<float> run(Backend& b) const {
    b.allocate_kv_cache({kNumBlocks, kBlockSize});
    std::vector<float> logits(plan.logits_rows.size() * size_t(b.config().vocab_size), NAN);
    b.forward(plan, logits);
    return logits;
  }
  // Over positions t with a next token in the sequence: log p(token[t+1]) and the argmax.
  Agreement compare(const std::vector<float>& got, const std::vector<float>& ref, int V) const {
    Agreement a;
    int n = 0, same = 0;
    for (int s = 0; s < plan.num_seqs(); ++s) {
      for (int t = plan.seq_offsets[s]; t + 1 < plan.seq_offsets[s + 1]; ++t) {
        const float* g = got.data() + size_t(t) * V;
        const float* r = ref.data() + size_t(t) * V;
        auto logprob = [&](const float* l, int id) {
          const float m = *std::max_element(l, l + V);
          double z = 0;
          for (int i = 0; i < V; ++i) z += std::exp(double(l[i]) - m);
          return double(l[id]) - m - std::log(z);
        };
        const int next = plan.token_ids[t + 1];
        const double d = std::fabs(logprob(g, next) - logprob(r, next));
        a.max_dlogprob = std::max(a.max_dlogprob, d);
        a.mean_dlogprob += d;
        same += std::max_element(g, g + V) - g == std::max_element(r, r + V) - r;
        ++n;
      }
    }
    a.mean_dlogprob /= n;
    a.top1 = double(same) / n;
    return a;
  }
};

cuda::CudaBackendOptions options(bool fp8, bool kv_fp8) {
  cuda::CudaBackendOptions o;
  o.dtype = DType::kBF16;
  o.max_num_tokens = 64;
  o.fp8 = fp8;
  o.kv_fp8 = kv_fp8;
  return o;
}

TEST(CudaFp8Model, AccuracyAgainstCpuOnTinyPresets) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  testing::TempDir dir("cuda_fp8_e2e");
  std::printf(
      "[fp8 e2e] | preset | configuration | max |Δ logprob| | mean |Δ logprob| | top-1 |\n");
  for (const std::string preset : {"tiny", "tiny-e8", "tiny-d128", "tiny-dense"}) {
    MakeModelOptions mo;
    mo.preset = preset;
    mo.out = dir.path() / preset;
    mo.dtype = DType::kBF16;
    make_model(mo);
    const auto fp8_dir = dir.path() / (preset + "-fp8");
    quantize_checkpoint(mo.out, fp8_dir);
    auto cpu = CpuBackend::load(mo.out, 0);
    const int V = cpu->config().vocab_size;
    const TeacherForced tf(V);
    const std::vector<float> ref = tf.run(*cpu);
    auto check = [&](const Bound& b, const std::vector<float>& got) {
      const Agreement a = tf.compare(got, ref, V);
      std::printf("[fp8 e2e] | %s | %s | %.3f | %.4f | %.1f%% |\n", preset.c_str(), b.name,
                  a.max_dlogprob, a.mean_dlogprob, 100 * a.top1);
      EXPECT_LT(a.max_dlogprob, b.max_dlogprob) << preset << " " << b.name;
      EXPECT_LT(a.mean_dlogprob, b.mean_dlogprob) << preset << " " << b.name;
      EXPECT_GE(a.top1, b.min_top1) << preset << " " << b.name;
    };
    check(kBf16, tf.run(*cuda::CudaBackend::load(mo.out, options(false, false))));
    check(kWeightsOnly, tf.run(*CpuBackend::load(fp8_dir, 0)));
    const std::vector<float> w8a8 = tf.run(*cuda::CudaBackend::load(mo.out, options(true, false)));
    check(kW8A8, w8a8);
    check(kKvOnly, tf.run(*cuda::CudaBackend::load(mo.out, options(false, true))));
    check(kAll, tf.run(*cuda::CudaBackend::load(mo.out, options(true, true))));
    // The quantized checkpoint loads as it is: the same bytes and scales as quantizing at load.
    EXPECT_EQ(tf.run(*cuda::CudaBackend::load(fp8_dir, options(false, false))), w8a8)
        << preset << ": FP8 checkpoint vs --quantization fp8";
    if (preset == "tiny") {
      EXPECT_EQ(
          tf.run(*cuda::CudaBackend::synthetic(preset_from_spec(preset), 0, options(true, false))),
          w8a8)
          << "synthetic FP8 weights vs the loaded checkpoint quantized at load";
    }
  }
}

TEST(CudaFp8Model, Fp8KvCacheHalvesBytesPerToken) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const ModelConfig c = preset_from_spec("tiny");
  auto half = cuda::CudaBackend::synthetic(c, 0, options(false, false));
  auto fp8 = cuda::CudaBackend::synthetic(c, 0, options(true, true));
  EXPECT_EQ(fp8->kv_bytes_per_token() * 2, half->kv_bytes_per_token());
  EXPECT_LT(fp8->weight_bytes(), half->weight_bytes());
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
