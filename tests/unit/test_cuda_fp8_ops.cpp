// FP8 kernels against host references: the cuBLASLt FP8 GEMM with per-token x per-channel
// scales, weight quantization (bit-equal to model/fp8_quant), RMSNorm -> FP8, SiLU·mul -> FP8
// with padded per-expert scales, and the FP8 row gather.
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <cstdio>
#include <cstring>
#include <string>

#include "backend/cuda/cublaslt_gemm.h"
#include "backend/cuda/fp8_kernels.h"
#include "fp8_test_support.h"
#include "model/fp8_quant.h"

namespace mixserve {
namespace {

using namespace cuda_test;

std::vector<float> dequant(const std::vector<uint8_t>& q, const std::vector<float>& s, int64_t R,
                           int64_t C) {
  std::vector<float> out(q.size());
  dequantize_rows_fp8(q.data(), s.data(), true, R, C, out.data());
  return out;
}

TEST(CudaFp8, GemmMatchesReference) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  cuda::CublasLtGemm gemm;
  for (int M : {1, 3, 17, 257}) {
    for (auto [N, K] : {std::pair{96, 64}, std::pair{200, 4096}, std::pair{48, 1040}}) {
      const std::vector<float> x = random_vector(size_t(M) * K, 2.0f);
      const std::vector<float> w = random_vector(size_t(N) * K, 0.05f);
      const Quantized xq = quantize(x, M, K), wq = quantize(w, N, K);
      const std::vector<float> xd = dequant(xq.q, xq.scales, M, K);
      const std::vector<float> wd = dequant(wq.q, wq.scales, N, K);
      std::vector<float> exact(size_t(M) * N), full(size_t(M) * N);
      for (int m = 0; m < M; ++m) {
        for (int n = 0; n < N; ++n) {
          double e = 0, f = 0;
          for (int k = 0; k < K; ++k) {
            e += double(xd[size_t(m) * K + k]) * wd[size_t(n) * K + k];
            f += double(x[size_t(m) * K + k]) * w[size_t(n) * K + k];
          }
          exact[size_t(m) * N + n] = float(e);
          full[size_t(m) * N + n] = float(f);
        }
      }
      DeviceBuffer dx = upload(xq.q), dxs = upload(xq.scales), dw = upload(wq.q),
                   dws = upload(wq.scales);
      for (DType out : {DType::kF32, DType::kBF16}) {
        DeviceBuffer dy(size_t(M) * N * 4);
        gemm.matmul_fp8(dx.as<uint8_t>(), dxs.as<float>(), dw.as<uint8_t>(), dws.as<float>(),
                        dy.get(), M, N, K, out, nullptr);
        const std::vector<float> got =
            out == DType::kF32 ? download<float>(dy, size_t(M) * N)
                               : from_half(download<uint16_t>(dy, size_t(M) * N), DType::kBF16);
        const double e_exact = rel_l2(got, exact), e_full = rel_l2(got, full);
        std::printf("[fp8 gemm] M=%d N=%d K=%d %s: vs dequantized operands %.2e, vs float %.2e\n",
                    M, N, K, std::string(dtype_name(out)).c_str(), e_exact, e_full);
        // Products of E4M3 values are exact; Hopper's FP8 tensor cores accumulate with fewer
        // mantissa bits than float32 between cuBLASLt's promotions (seen: <= 1.3e-4 on an H100).
        EXPECT_LT(e_exact, out == DType::kF32 ? 1e-3 : kBf16OpTol) << M << "x" << N << "x" << K;
        // E4M3 rounding of both operands (~3.6% rms each, averaging over K).
        EXPECT_LT(e_full, 0.08) << M << "x" << N << "x" << K;
      }
      // Unscaled GEMM + scale_rows_cols: the same function (the MoE lanes' BF16 path).
      if (N % 4 == 0) {
        DeviceBuffer dy(size_t(M) * N * 4);
        MIXSERVE_CUDA_CHECK(cudaMemset(dy.get(), 0xff, size_t(M) * N * 4));
        gemm.matmul_fp8_unscaled(dx.as<uint8_t>(), dw.as<uint8_t>(), dy.get(), M, N, K,
                                 DType::kF32, nullptr);
        MIXSERVE_CUDA_CHECK(cuda::scale_rows_cols(dy.as<float>(), M, N, dxs.as<float>(),
                                                  dws.as<float>(), nullptr));
        EXPECT_LT(rel_l2(download<float>(dy, size_t(M) * N), exact), 1e-3)
            << "unscaled " << M << "x" << N << "x" << K;
      }
    }
  }
}

TEST(CudaFp8, WeightQuantizationIsBitEqualToHost) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  // C = 300: the two-pass kernel; 304 and 4096: the one-pass register kernel (C % 8 == 0).
  for (const auto& [dt, C] : {std::pair{DType::kBF16, int64_t{300}}, {DType::kF16, int64_t{300}},
                              {DType::kBF16, int64_t{304}}, {DType::kF16, int64_t{4096}}}) {
    const int64_t R = 37;
    std::vector<float> v = rounded(random_vector(R * C, 0.3f), dt);
    for (int64_t c = 0; c < C; ++c) v[5 * C + c] = 0.0f;
    const Quantized ref = quantize(v, R, C);
    DeviceBuffer src = upload(to_half(v, dt)), q(R * C), s(R * 4);
    MIXSERVE_CUDA_CHECK(
        cuda::quantize_rows_fp8(src.get(), dt, R, int(C), q.as<uint8_t>(), s.as<float>(), nullptr));
    EXPECT_EQ(download<uint8_t>(q, R * C), ref.q) << dtype_name(dt);
    EXPECT_EQ(download<float>(s, R), ref.scales) << dtype_name(dt);
  }
}

TEST(CudaFp8, RmsNormQuantizesEachRow) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  for (int R : {1, 3, 17}) {
    // H % 4 == 0: the one-pass register kernel (1 and 4 chunks a thread); 202: three passes.
    // scaled: delta holds an unscaled FP8 GEMM's sums, standing for raw * row[r] * col[i].
    for (int H : {200, 4096, 202}) for (const bool scaled : {false, true}) {
      SCOPED_TRACE("R = " + std::to_string(R) + " H = " + std::to_string(H) +
                   (scaled ? " scaled delta" : ""));
      const std::vector<float> x = random_vector(size_t(R) * H),
                               raw = random_vector(size_t(R) * H, scaled ? 300.0f : 1.0f);
      std::vector<float> row(R), col(H), delta = raw;
      for (float& v : row) v = 0.01f + std::abs(random_vector(1)[0]) * 0.02f;
      for (float& v : col) v = 0.001f + std::abs(random_vector(1)[0]) * 0.01f;
      for (int r = 0; r < R && scaled; ++r) {
        for (int i = 0; i < H; ++i) delta[size_t(r) * H + i] = raw[size_t(r) * H + i] * (row[r] * col[i]);
      }
      const std::vector<float> w = rounded(random_vector(H, 0.3f), dt);
      const float eps = 1e-5f;
      std::vector<float> sum(size_t(R) * H), normed(size_t(R) * H);
      for (int r = 0; r < R; ++r) {
        double ss = 0;
        for (int i = 0; i < H; ++i) {
          sum[size_t(r) * H + i] = x[size_t(r) * H + i] + delta[size_t(r) * H + i];
          ss += double(sum[size_t(r) * H + i]) * sum[size_t(r) * H + i];
        }
        const double inv = 1.0 / std::sqrt(ss / H + eps);
        for (int i = 0; i < H; ++i)
          normed[size_t(r) * H + i] = float(w[i] * sum[size_t(r) * H + i] * inv);
      }
      const Quantized ref = quantize(normed, R, H);
      DeviceBuffer dx = upload(x), dd = upload(scaled ? raw : delta), dw = upload(to_half(w, dt)),
                   drow = upload(row), dcol = upload(col);
      DeviceBuffer half(size_t(R) * H * 2), q(size_t(R) * H), s(R * 4);
      MIXSERVE_CUDA_CHECK(cuda::add_rms_norm_fp8(dx.as<float>(), dd.as<float>(), R, H, dw.get(),
                                                 eps, half.get(), q.as<uint8_t>(), s.as<float>(),
                                                 dt, nullptr, scaled ? drow.as<float>() : nullptr,
                                                 scaled ? dcol.as<float>() : nullptr));
      if (scaled) {  // the device may fuse the scaling multiply into the add (one rounding less)
        EXPECT_LT(rel_l2(download<float>(dx, size_t(R) * H), sum), 1e-6) << "residual stream";
      } else {
        EXPECT_EQ(download<float>(dx, size_t(R) * H), sum) << "residual stream: exact float adds";
      }
      const std::vector<float> scales = download<float>(s, R);
      for (int r = 0; r < R; ++r) EXPECT_NEAR(scales[r], ref.scales[r], 1e-5 * ref.scales[r]);
      const std::vector<float> got = dequant(download<uint8_t>(q, size_t(R) * H), scales, R, H);
      const double e_ref = rel_l2(got, dequant(ref.q, ref.scales, R, H));
      const double e_float = rel_l2(got, normed);
      std::printf("[fp8 norm] R=%d H=%d: vs host quantization %.2e, vs float %.2e\n", R, H, e_ref,
                  e_float);
      // Summation order moves a value across a rounding boundary only rarely (one E4M3 step).
      EXPECT_LT(e_ref, 5e-3);
      EXPECT_LT(e_float, 0.05);
      EXPECT_LT(rel_l2(from_half(download<uint16_t>(half, size_t(R) * H), dt), normed), kBf16OpTol);
    }
  }
}

TEST(CudaFp8, SiluMulAndGatherUsePaddedExpertScales) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  const int H = 208;
  // Experts' row counts {3, 0, 5, 1}: padded scale runs start at 0, 4, 4, 12.
  const std::vector<int32_t> offsets = {0, 3, 3, 8, 9};
  const std::vector<int> padded = {0, 1, 2, 4, 5, 6, 7, 8, 12};
  const int n = 9, E = 4;
  DeviceBuffer doff = upload(offsets);
  // F % 8 == 0 takes the one-pass register kernel (2, 4 or 8 chunks a thread: 304, 4104,
  // 14336); 302 the two-pass one.
  for (const int F : {304, 302, 4104, 14336}) {
    SCOPED_TRACE("F = " + std::to_string(F));
    const std::vector<float> gu = rounded(random_vector(size_t(n) * 2 * F, 2.0f), dt);
    std::vector<float> act(size_t(n) * F);
    for (int r = 0; r < n; ++r) {
      for (int f = 0; f < F; ++f) {
        const float g = gu[size_t(r) * 2 * F + f], u = gu[size_t(r) * 2 * F + F + f];
        act[size_t(r) * F + f] = g / (1.0f + std::exp(-g)) * u;
      }
    }
    const Quantized ref = quantize(act, n, F);
    DeviceBuffer dgu = upload(to_half(gu, dt)), q(size_t(n) * F), s((n + 3 * E) * 4);
    MIXSERVE_CUDA_CHECK(cudaMemset(q.get(), 0xff, size_t(n) * F));  // poison: NaN in E4M3
    MIXSERVE_CUDA_CHECK(cuda::silu_mul_fp8(dgu.get(), n, F, q.as<uint8_t>(), s.as<float>(),
                                           doff.as<int32_t>(), E, dt, nullptr));
    const std::vector<float> all = download<float>(s, n + 3 * E);
    std::vector<float> scales(n);
    for (int r = 0; r < n; ++r) {
      scales[r] = all[padded[r]];
      EXPECT_NEAR(scales[r], ref.scales[r], 1e-5 * ref.scales[r]) << "row " << r;
    }
    const std::vector<float> got = dequant(download<uint8_t>(q, size_t(n) * F), scales, n, F);
    EXPECT_LT(rel_l2(got, dequant(ref.q, ref.scales, n, F)), 5e-3);
    EXPECT_LT(rel_l2(got, act), 0.05);
  }

  // Gather: rows of a quantized [T, H] source in sorted order, scales to padded slots.
  const int T = 6;
  std::vector<uint8_t> src(size_t(T) * H);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t(rng()() & 0x7e);
  const std::vector<float> src_scales = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f};
  const std::vector<int32_t> index = {5, 0, 2, 2, 1, 4, 3, 0, 5};
  DeviceBuffer dsrc = upload(src), dss = upload(src_scales), didx = upload(index),
               dq(size_t(n) * H), ds((n + 3 * E) * 4);
  MIXSERVE_CUDA_CHECK(cudaMemset(ds.get(), 0, (n + 3 * E) * 4));
  MIXSERVE_CUDA_CHECK(cuda::gather_rows_fp8(dsrc.as<uint8_t>(), dss.as<float>(), didx.as<int32_t>(),
                                            n, H, doff.as<int32_t>(), E, dq.as<uint8_t>(),
                                            ds.as<float>(), nullptr));
  const std::vector<uint8_t> gq = download<uint8_t>(dq, size_t(n) * H);
  const std::vector<float> gs = download<float>(ds, n + 3 * E);
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(0, std::memcmp(gq.data() + size_t(r) * H, src.data() + size_t(index[r]) * H, H));
    EXPECT_EQ(gs[padded[r]], src_scales[index[r]]) << "row " << r;
  }
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
