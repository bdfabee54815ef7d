// CUDA kernels against the CPU reference ops: embedding, residual add + RMSNorm, rotary
// embedding + KV write, synthetic weights, cuBLASLt GEMMs. Awkward sizes, fresh random data.
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <algorithm>
#include <numeric>

#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cublaslt_gemm.h"
#include "backend/cuda/kernels.h"
#include "model/make_model.h"

namespace mixserve {
namespace {

using namespace cuda_test;

TEST(CudaOps, EmbeddingGatherIsExact) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const int V = 50, H = 72;
  for (int T : {1, 3, 17, 257}) {
    const std::vector<float> embed = rounded(random_vector(size_t(V) * H), DType::kBF16);
    std::vector<int32_t> ids(T);
    for (int& id : ids) id = int(rng()() % V);
    DeviceBuffer d_embed = upload(to_half(embed, DType::kBF16)), d_ids = upload(ids);
    DeviceBuffer d_x(size_t(T) * H * 4);
    ASSERT_EQ(cuda::embedding_gather(d_ids.as<int32_t>(), T, d_embed.get(), DType::kBF16, H,
                                     d_x.as<float>(), nullptr),
              cudaSuccess);
    const std::vector<float> x = download<float>(d_x, size_t(T) * H);
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) ASSERT_EQ(x[t * H + h], embed[ids[t] * H + h]);
    }
  }
}

TEST(CudaOps, AddRmsNormMatchesCpu) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::kBF16, DType::kF16}) {
    for (int T : {1, 3, 17, 257}) {
      for (int H : {48, 4096, 1000}) {
        std::vector<float> x = random_vector(size_t(T) * H, 3.0f);
        const std::vector<float> delta = random_vector(size_t(T) * H);
        std::vector<float> w = rounded(random_vector(H, 0.2f), dt);
        for (float& v : w) v = from_half_bits(to_half_bits(v + 1.0f, dt), dt);
        DeviceBuffer d_x = upload(x), d_delta = upload(delta), d_w = upload(to_half(w, dt));
        DeviceBuffer d_out(size_t(T) * H * 2);
        ASSERT_EQ(cuda::add_rms_norm(d_x.as<float>(), d_delta.as<float>(), nullptr, T, H, d_w.get(),
                                     1e-5f, d_out.get(), dt, nullptr),
                  cudaSuccess);
        for (size_t i = 0; i < x.size(); ++i) x[i] += delta[i];
        std::vector<float> ref(x.size());
        cpu::rms_norm(x.data(), T, H, w.data(), 1e-5f, ref.data());
        EXPECT_EQ(download<float>(d_x, x.size()), x) << "residual stream not updated exactly";
        const std::vector<float> got = from_half(download<uint16_t>(d_out, x.size()), dt);
        EXPECT_LT(rel_l2(got, ref), op_tol(dt)) << "T=" << T << " H=" << H;

        // Rows only (the final norm): a shuffled subset, x left alone.
        std::vector<int32_t> rows(T);
        std::iota(rows.begin(), rows.end(), 0);
        std::shuffle(rows.begin(), rows.end(), rng());
        rows.resize((T + 1) / 2);
        const int R = int(rows.size());
        DeviceBuffer d_rows = upload(rows), d_out2(size_t(R) * H * 2);
        const std::vector<float> x_before = download<float>(d_x, x.size());
        ASSERT_EQ(cuda::add_rms_norm(d_x.as<float>(), d_delta.as<float>(), d_rows.as<int32_t>(), R,
                                     H, d_w.get(), 1e-5f, d_out2.get(), dt, nullptr),
                  cudaSuccess);
        std::vector<float> sel(size_t(R) * H), ref2(sel.size());
        for (int r = 0; r < R; ++r) {
          for (int h = 0; h < H; ++h) sel[r * H + h] = x[rows[r] * H + h] + delta[rows[r] * H + h];
        }
        cpu::rms_norm(sel.data(), R, H, w.data(), 1e-5f, ref2.data());
        EXPECT_LT(rel_l2(from_half(download<uint16_t>(d_out2, sel.size()), dt), ref2), op_tol(dt));
        EXPECT_EQ(download<float>(d_x, x.size()), x_before) << "rows mode must not write x";
      }
    }
  }
}

TEST(CudaOps, RopeAndKvWriteMatchCpu) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  struct Shape {
    int Hq, Hkv, D;
  };
  for (const Shape s : {Shape{4, 1, 32}, Shape{6, 2, 8}, Shape{32, 8, 128}, Shape{4, 4, 6}}) {
    for (int T : {1, 3, 17, 257}) {
      const int W = (s.Hq + 2 * s.Hkv) * s.D, N = T + 40;
      const std::vector<float> qkv = rounded(random_vector(size_t(T) * W), dt);
      std::vector<int32_t> pos(T);
      for (int& p : pos) p = int(rng()() % 20000);
      std::vector<int64_t> slots = random_slots(T, N);
      const std::vector<float> inv = cpu::rope_inv_freq(s.D, 1e6);
      DeviceBuffer d_qkv = upload(to_half(qkv, dt)), d_pos = upload(pos), d_slots = upload(slots);
      DeviceBuffer d_inv = upload(inv);
      const size_t pool = size_t(cuda::kv_pool_slots(N)) * s.Hkv * s.D;
      DeviceBuffer d_k = upload(std::vector<uint16_t>(pool, 0x7fc0)),  // NaN poison
          d_v = upload(std::vector<uint16_t>(pool, 0x7fc0));
      ASSERT_EQ(cuda::rope_write_kv(d_qkv.get(), dt, T, s.Hq, s.Hkv, s.D, d_pos.as<int32_t>(),
                                    d_slots.as<int64_t>(), d_inv.as<float>(), d_k.get(), d_v.get(),
                                    nullptr),
                cudaSuccess);
      const std::vector<float> got_qkv = from_half(download<uint16_t>(d_qkv, qkv.size()), dt);
      const std::vector<float> k =
          from_half(from_device_kv(download<uint16_t>(d_k, pool), N, s.Hkv, s.D), dt);
      const std::vector<float> v =
          from_half(from_device_kv(download<uint16_t>(d_v, pool), N, s.Hkv, s.D), dt);
      std::vector<float> ref_q, got_q, ref_k, got_k;
      for (int t = 0; t < T; ++t) {
        std::vector<float> row(qkv.begin() + size_t(t) * W, qkv.begin() + size_t(t + 1) * W);
        cpu::apply_rope(row.data(), s.Hq + s.Hkv, s.D, pos[t], inv.data());
        for (int i = 0; i < s.Hq * s.D; ++i) {
          ref_q.push_back(row[i]);
          got_q.push_back(got_qkv[size_t(t) * W + i]);
        }
        const size_t base = size_t(slots[t]) * s.Hkv * s.D;
        for (int i = 0; i < s.Hkv * s.D; ++i) {
          ref_k.push_back(row[s.Hq * s.D + i]);
          got_k.push_back(k[base + i]);
          ASSERT_EQ(v[base + i], row[(s.Hq + s.Hkv) * s.D + i]) << "V copied exactly";
        }
      }
      EXPECT_LT(rel_l2(got_q, ref_q), kBf16OpTol) << "q, T=" << T << " D=" << s.D;
      EXPECT_LT(rel_l2(got_k, ref_k), kBf16OpTol) << "k, T=" << T << " D=" << s.D;
    }
  }
}

TEST(CudaOps, SyntheticWeightsEqualMakeModel) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (DType dt : {DType::kBF16, DType::kF16}) {
    for (const ExpectedTensor& t :
         {ExpectedTensor{weight_names::embed(), {37, 29}},
          ExpectedTensor{weight_names::attn_norm(3), {129}},
          ExpectedTensor{weight_names::lm_head(), {11, 64}},
          ExpectedTensor{"model.layers.1.block_sparse_moe.gate.weight", {8, 40}}}) {
      const size_t n = size_t(t.shape[0]) * (t.shape.size() > 1 ? t.shape[1] : 1);
      std::vector<float> ref(n);
      synthetic_tensor_values(t, 1234, ref.data());
      const SyntheticTensorParams p = synthetic_tensor_params(t, 1234);
      DeviceBuffer d(n * 2);
      ASSERT_EQ(cuda::fill_synthetic(d.get(), dt, int64_t(n), p.key, p.half_width, p.norm, nullptr),
                cudaSuccess);
      EXPECT_EQ(download<uint16_t>(d, n), to_half(ref, dt)) << t.name;
    }
  }
}

TEST(CudaOps, CublasLtGemmMatchesCpuLinear) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  cuda::CublasLtGemm gemm;
  struct Shape {
    int N, K;
  };
  for (DType dt : {DType::kBF16, DType::kF16}) {
    for (const Shape s : {Shape{64, 128}, Shape{40, 48}, Shape{8, 4096}, Shape{500, 256}}) {
      for (int M : {1, 3, 17, 257}) {
        const std::vector<float> x = rounded(random_vector(size_t(M) * s.K), dt);
        const std::vector<float> w = rounded(random_vector(size_t(s.N) * s.K), dt);
        std::vector<float> ref(size_t(M) * s.N);
        cpu::linear(x.data(), M, w.data(), s.K, s.N, ref.data(), 1);
        DeviceBuffer d_x = upload(to_half(x, dt)), d_w = upload(to_half(w, dt));
        DeviceBuffer d_y32(ref.size() * 4), d_y16(ref.size() * 2);
        gemm.matmul(d_x.get(), d_w.get(), d_y32.get(), M, s.N, s.K, dt, DType::kF32, nullptr);
        gemm.matmul(d_x.get(), d_w.get(), d_y16.get(), M, s.N, s.K, dt, dt, nullptr);
        // float32 output: only the summation order differs.
        EXPECT_LT(rel_l2(download<float>(d_y32, ref.size()), ref), 1e-5)
            << "M=" << M << " N=" << s.N << " K=" << s.K;
        EXPECT_LT(rel_l2(from_half(download<uint16_t>(d_y16, ref.size()), dt), ref), op_tol(dt));
      }
    }
  }
}

// Autotuned GEMMs (>= 1 GFLOP) stay correct: the first of a shape class times the candidates
// on its real operands (and overwrites y), later Ms of the class reuse the winner; lanes use
// their own workspaces.
TEST(CudaOps, CublasLtGemmAutotuneKeepsResults) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  cuda::CublasLtGemm gemm(size_t{32} << 20, 2);
  gemm.set_autotune(true);
  const DType dt = DType::kBF16;
  const int N = 2048, K = 1024;  // 2 * M * N * K >= 1e9 for M >= 239
  const std::vector<float> w = rounded(random_vector(size_t(N) * K), dt);
  DeviceBuffer d_w = upload(to_half(w, dt));
  int lane = 0;
  for (int M : {256, 250, 193, 300}) {  // classes 256, 256, 256 (too small: untuned), 320
    const std::vector<float> x = rounded(random_vector(size_t(M) * K), dt);
    std::vector<float> ref(size_t(M) * N);
    cpu::linear(x.data(), M, w.data(), K, N, ref.data(), 1);
    DeviceBuffer d_x = upload(to_half(x, dt)), d_y(ref.size() * 4);
    MIXSERVE_CUDA_CHECK(cudaMemset(d_y.get(), 0xff, ref.size() * 4));  // NaN poison
    gemm.matmul(d_x.get(), d_w.get(), d_y.get(), M, N, K, dt, DType::kF32, nullptr, lane);
    EXPECT_LT(rel_l2(download<float>(d_y, ref.size()), ref), 1e-5) << "M=" << M;
    lane = 1 - lane;
  }
  // Classes 256 and 320 were tuned once each: 250 reused 256's; 193 (0.8 GFLOP, 4 MiB of
  // weights) stays with the heuristic.
  EXPECT_EQ(gemm.tuned_classes(), 2);
  EXPECT_THROW(gemm.matmul(nullptr, d_w.get(), nullptr, 1, N, K, dt, DType::kF32, nullptr, 2),
               Error);
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
