// MoE kernels against the CPU reference: routing (softmax, top-k with ties, renormalisation),
// the stable counting sort by expert (one expert taking every token, the others empty), the
// gather, SiLU·mul and the ordered weighted combine.
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include "backend/cpu/cpu_moe.h"
#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/kernels.h"

namespace mixserve {
namespace {

using namespace cuda_test;

TEST(CudaMoe, TopkMatchesCpuRoutingIncludingTies) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (const auto& [E, K] : {std::pair{8, 2}, std::pair{5, 3}, std::pair{64, 4}, std::pair{4, 1}}) {
    for (int T : {1, 3, 17, 257}) {
      // Logits on a coarse grid: many exact ties between experts.
      std::vector<float> logits = random_vector(size_t(T) * E);
      for (float& l : logits) l = std::round(l * 2.0f) / 2.0f;
      // The CPU routes h · router^T; with H = E and an identity router the logits are exact.
      ModelConfig c;
      c.moe = true;
      c.hidden_size = E;
      c.num_local_experts = E;
      c.num_experts_per_tok = K;
      CpuLayerWeights lw;
      lw.router.assign(size_t(E) * E, 0.0f);
      for (int e = 0; e < E; ++e) lw.router[size_t(e) * E + e] = 1.0f;
      const cpu::Routing ref = cpu::route_tokens(logits.data(), T, c, lw, 1);

      DeviceBuffer d_logits = upload(logits), d_exp(size_t(T) * K * 4), d_w(size_t(T) * K * 4);
      ASSERT_EQ(cuda::moe_topk(d_logits.as<float>(), T, E, K, d_exp.as<int32_t>(), d_w.as<float>(),
                               nullptr),
                cudaSuccess);
      const std::vector<int32_t> experts = download<int32_t>(d_exp, size_t(T) * K);
      const std::vector<float> weights = download<float>(d_w, size_t(T) * K);
      for (size_t i = 0; i < experts.size(); ++i) {
        ASSERT_EQ(experts[i], ref.experts[i]) << "pair " << i << " E=" << E << " K=" << K;
        EXPECT_NEAR(weights[i], ref.weights[i], 1e-6f);
      }
    }
  }
}

// Checks the sort of `experts` ([T*K]) against a stable sort on the host.
void check_sort(const std::vector<int32_t>& experts, int T, int K, int E,
                cuda::MoeSortKernel kernel = cuda::MoeSortKernel::kDefault) {
  const int N = T * K;
  DeviceBuffer d_exp = upload(experts), d_counts(E * 4), d_off((E + 1) * 4),
               d_sorted(std::max(N, 1) * 4), d_pos(std::max(N, 1) * 4);
  ASSERT_EQ(
      cuda::moe_sort(d_exp.as<int32_t>(), T, K, E, d_counts.as<int32_t>(), d_off.as<int32_t>(),
                     d_sorted.as<int32_t>(), d_pos.as<int32_t>(), nullptr, kernel),
      cudaSuccess);
  const auto counts = download<int32_t>(d_counts, E), offsets = download<int32_t>(d_off, E + 1);
  const auto sorted = download<int32_t>(d_sorted, N), pos = download<int32_t>(d_pos, N);
  std::vector<int32_t> ref_sorted, ref_pos(N);
  for (int e = 0, row = 0; e < E; ++e) {
    ASSERT_EQ(offsets[e], row);
    int n = 0;
    for (int i = 0; i < N; ++i) {
      if (experts[i] != e) continue;
      ref_pos[i] = row + n++;
      ref_sorted.push_back(i / K);
    }
    ASSERT_EQ(counts[e], n) << "expert " << e;
    row += n;
  }
  ASSERT_EQ(offsets[E], N);
  EXPECT_EQ(sorted, ref_sorted);
  EXPECT_EQ(pos, ref_pos);
}

TEST(CudaMoe, CountingSortIsStableAndHandlesEmptyExperts) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (int T : {1, 3, 17, 257, 3000}) {
    for (const auto& [E, K] : {std::pair{8, 2}, std::pair{64, 3}}) {
      std::vector<int32_t> experts(size_t(T) * K);
      for (int t = 0; t < T; ++t) {
        // K distinct experts per token, as routing gives.
        const int first = int(rng()() % E);
        for (int k = 0; k < K; ++k) experts[t * K + k] = (first + k * 5) % E;
      }
      check_sort(experts, T, K, E);
    }
    // Every token on expert 5 of 8, the others empty.
    check_sort(std::vector<int32_t>(T, 5), T, 1, 8);
  }
}

// Both sort kernels (the tiled one spreads the pairs over blocks of 1,024) at steps of many
// blocks (prefill sizes up to 24,576 tokens), pair counts that end mid-warp and mid-block,
// skewed and one-sided routings, the expert-parallel bucket count (E + 1) and 64 experts; and
// the tiled one at the small sizes of CountingSortIsStableAndHandlesEmptyExperts.
TEST(CudaMoe, CountingSortAcrossBlocksMatchesStableSort) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (int T : {0, 1, 3, 17, 257}) {
    std::vector<int32_t> experts(size_t(T) * 2);
    for (int t = 0; t < T; ++t) experts[t * 2] = t % 8, experts[t * 2 + 1] = (t + 3) % 8;
    check_sort(experts, T, 2, 8, cuda::MoeSortKernel::kTiled);
  }
  for (const cuda::MoeSortKernel kernel : {cuda::MoeSortKernel::kTiled,
                                           cuda::MoeSortKernel::kBlock}) {
  for (int T : {512, 1023, 4097, 16384, 24576}) {
    for (const auto& [E, K] : {std::pair{8, 2}, std::pair{9, 2}, std::pair{64, 3}}) {
      std::vector<int32_t> experts(size_t(T) * K);
      for (int t = 0; t < T; ++t) {
        // A third of the tokens on experts 0 and 1 (uneven counts), the rest random.
        const int first = t % 3 == 0 ? 0 : int(rng()() % E);
        for (int k = 0; k < K; ++k) experts[t * K + k] = (first + k * (t % 3 == 0 ? 1 : 5)) % E;
      }
      check_sort(experts, T, K, E, kernel);
    }
    // Every pair on the last expert, then every pair on the first.
    check_sort(std::vector<int32_t>(size_t(T) * 2, 7), T, 2, 8, kernel);
    std::vector<int32_t> halves(size_t(T) * 2, 0);
    std::fill(halves.begin() + T, halves.end(), 3);
    check_sort(halves, T, 2, 8, kernel);
  }
  }
}

TEST(CudaMoe, GatherSiluMulAndCombineMatchReference) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  for (int T : {1, 3, 17, 257}) {
    // F % 8 == 0 takes the vectorized SiLU·mul; T = 17 runs the scalar one (F = 36).
    const int H = 96, F = T == 17 ? 36 : 40, K = 2, E = 8;
    // Gather: exact.
    const std::vector<float> src = rounded(random_vector(size_t(T) * H), dt);
    std::vector<int32_t> index(size_t(T) * K);
    for (int32_t& i : index) i = int(rng()() % T);
    DeviceBuffer d_src = upload(to_half(src, dt)), d_index = upload(index),
                 d_dst(index.size() * H * 2);
    ASSERT_EQ(cuda::gather_rows(d_src.get(), d_index.as<int32_t>(), int(index.size()), H,
                                d_dst.get(), dt, nullptr),
              cudaSuccess);
    const std::vector<float> dst = from_half(download<uint16_t>(d_dst, index.size() * H), dt);
    for (size_t r = 0; r < index.size(); ++r) {
      for (int h = 0; h < H; ++h) ASSERT_EQ(dst[r * H + h], src[size_t(index[r]) * H + h]);
    }
    // SiLU(gate) * up.
    const int n = T * K;
    const std::vector<float> gu = rounded(random_vector(size_t(n) * 2 * F, 2.0f), dt);
    std::vector<float> ref(size_t(n) * F);
    for (int r = 0; r < n; ++r) {
      for (int f = 0; f < F; ++f) {
        ref[size_t(r) * F + f] =
            cpu::silu(gu[size_t(r) * 2 * F + f]) * gu[size_t(r) * 2 * F + F + f];
      }
    }
    DeviceBuffer d_gu = upload(to_half(gu, dt)), d_act(ref.size() * 2);
    ASSERT_EQ(cuda::silu_mul(d_gu.get(), n, F, d_act.get(), dt, nullptr), cudaSuccess);
    EXPECT_LT(rel_l2(from_half(download<uint16_t>(d_act, ref.size()), dt), ref), kBf16OpTol);
    // Combine: each token's K rows in ascending expert order.
    const std::vector<float> y = random_vector(size_t(n) * H);
    std::vector<int32_t> experts(n), pos(n);
    std::vector<float> w(n);
    for (int t = 0; t < T; ++t) {
      experts[t * K] = int(rng()() % E);
      experts[t * K + 1] = (experts[t * K] + 1 + int(rng()() % (E - 1))) % E;
      w[t * K] = float(rng()() % 1000) / 1000.0f;
      w[t * K + 1] = 1.0f - w[t * K];
    }
    std::iota(pos.begin(), pos.end(), 0);
    std::shuffle(pos.begin(), pos.end(), rng());
    std::vector<float> ref_out(size_t(T) * H, 0.0f);
    for (int t = 0; t < T; ++t) {
      const int lo = experts[t * K] < experts[t * K + 1] ? 0 : 1;
      for (int k : {lo, 1 - lo}) {
        for (int h = 0; h < H; ++h) {
          ref_out[size_t(t) * H + h] += y[size_t(pos[t * K + k]) * H + h] * w[t * K + k];
        }
      }
    }
    DeviceBuffer d_y = upload(y), d_e = upload(experts), d_w = upload(w), d_p = upload(pos),
                 d_out(ref_out.size() * 4);
    ASSERT_EQ(cuda::moe_combine(d_y.as<float>(), d_e.as<int32_t>(), d_w.as<float>(),
                                d_p.as<int32_t>(), T, K, H, d_out.as<float>(), nullptr),
              cudaSuccess);
    EXPECT_LT(rel_l2(download<float>(d_out, ref_out.size()), ref_out), 1e-6);
  }
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
