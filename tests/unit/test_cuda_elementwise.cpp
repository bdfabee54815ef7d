// The element-wise kernels' vector paths at awkward sizes, and their scalar fallbacks:
// SiLU·mul (BF16 and FP8, unscaled GEMM input too, padded expert scales), the MoE
// combine for K = 1..4, the FP8 row / column rescale, RoPE with the K/V write into BF16 and
// E4M3 caches with padding slots.
// (test_cuda_moe, test_cuda_fp8_ops and test_cuda_ops cover the Mixtral-like shapes.)
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <cstring>
#include <numeric>
#include <string>

#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/kernels.h"
#include "fp8_test_support.h"
#include "model/fp8_quant.h"

namespace mixserve {
namespace {

using namespace cuda_test;

// SiLU(gate) * up of rows [n, 2F] (gate first); `unscaled`: each input first times
// row[r] * col[column], as the unscaled FP8 GEMM sums are.
std::vector<float> silu_mul_reference(const std::vector<float>& gu, int n, int F, bool unscaled,
                                      const std::vector<float>& row,
                                      const std::vector<float>& col) {
  std::vector<float> act(size_t(n) * F);
  for (int r = 0; r < n; ++r) {
    for (int f = 0; f < F; ++f) {
      float a = gu[size_t(r) * 2 * F + f], b = gu[size_t(r) * 2 * F + F + f];
      if (unscaled) {
        a *= row[r] * col[f];
        b *= row[r] * col[F + f];
      }
      act[size_t(r) * F + f] = a / (1.0f + std::exp(-a)) * b;
    }
  }
  return act;
}

TEST(CudaElementwise, SiluMulFp8WideRowsAndUnscaledInput) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  // F = 8: one chunk (a 32-thread block); 14336: 4 chunks a thread, 448 threads; 28672: 8
  // chunks a thread; 8200: 4 chunks a thread, 288 threads, the last warp partly idle; 36864:
  // wider than the vector kernel (the two-pass one; unscaled input is refused there).
  for (const int F : {8, 8200, 14336, 28672, 36864}) {
    for (const int n : {1, 3}) {
      for (const bool unscaled : {false, true}) {
        SCOPED_TRACE("F = " + std::to_string(F) + " n = " + std::to_string(n) +
                     (unscaled ? " unscaled" : ""));
        const std::vector<float> gu = rounded(random_vector(size_t(n) * 2 * F, 2.0f), dt);
        std::vector<float> row(n), col(2 * F);
        for (float& v : row) v = 0.5f + float(rng()() % 1000) / 1000.0f;
        for (float& v : col) v = 0.5f + float(rng()() % 1000) / 1000.0f;
        const std::vector<float> act = silu_mul_reference(gu, n, F, unscaled, row, col);
        DeviceBuffer dgu = upload(to_half(gu, dt)), drow = upload(row), dcol = upload(col),
                     q(size_t(n) * F), s(size_t(n) * 4);
        MIXSERVE_CUDA_CHECK(cudaMemset(q.get(), 0xff, size_t(n) * F));  // NaN poison
        const cudaError_t e = cuda::silu_mul_fp8(
            dgu.get(), n, F, q.as<uint8_t>(), s.as<float>(), nullptr, 0, dt, nullptr,
            unscaled ? drow.as<float>() : nullptr, unscaled ? dcol.as<float>() : nullptr);
        if (F > 28672 && unscaled) {
          EXPECT_EQ(e, cudaErrorInvalidValue);
          continue;
        }
        ASSERT_EQ(e, cudaSuccess);
        std::vector<float> got(act.size());
        const std::vector<uint8_t> hq = download<uint8_t>(q, act.size());
        const std::vector<float> hs = download<float>(s, n);
        dequantize_rows_fp8(hq.data(), hs.data(), true, n, F, got.data());
        EXPECT_LT(rel_l2(got, quant_dequant(act, n, F)), 5e-3);
      }
    }
  }
}

// Hundreds of rows (more blocks than an H100 holds at once), with padded expert scales, and
// unscaled input.
TEST(CudaElementwise, SiluMulFp8ManyRowsPaddedScales) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  for (const int F : {8, 4096, 14336}) {
    for (const int n : {300, 1001}) {
      const bool unscaled = n == 1001;
      SCOPED_TRACE("F = " + std::to_string(F) + " n = " + std::to_string(n));
      const std::vector<float> gu = rounded(random_vector(size_t(n) * 2 * F, 2.0f), dt);
      std::vector<float> row(n), col(2 * F);
      for (float& v : row) v = 0.5f + float(rng()() % 1000) / 1000.0f;
      for (float& v : col) v = 0.5f + float(rng()() % 1000) / 1000.0f;
      // Four experts' runs {n/3, 0, n/3 + 1, rest}; scale slot of row r: r + the padding of
      // the runs before its own (fp8_kernels.h).
      const int E = 4;
      const std::vector<int32_t> offsets = {0, n / 3, n / 3, 2 * (n / 3) + 1, n};
      std::vector<int> padded(n);
      for (int r = 0, pad = 0, e = 0; r < n; ++r) {
        while (offsets[e + 1] <= r) {
          const int c = offsets[e + 1] - offsets[e];
          pad += (c + 3) / 4 * 4 - c;
          ++e;
        }
        padded[r] = r + pad;
      }
      const std::vector<float> act = silu_mul_reference(gu, n, F, unscaled, row, col);
      DeviceBuffer dgu = upload(to_half(gu, dt)), drow = upload(row), dcol = upload(col),
                   doff = upload(offsets), q(size_t(n) * F), s(size_t(n + 3 * E) * 4);
      MIXSERVE_CUDA_CHECK(cudaMemset(q.get(), 0xff, size_t(n) * F));  // NaN poison
      ASSERT_EQ(cuda::silu_mul_fp8(dgu.get(), n, F, q.as<uint8_t>(), s.as<float>(),
                                   doff.as<int32_t>(), E, dt, nullptr,
                                   unscaled ? drow.as<float>() : nullptr,
                                   unscaled ? dcol.as<float>() : nullptr),
                cudaSuccess);
      const std::vector<float> all = download<float>(s, n + 3 * E);
      std::vector<float> scales(n);
      for (int r = 0; r < n; ++r) scales[r] = all[padded[r]];
      std::vector<float> got(act.size());
      const std::vector<uint8_t> hq = download<uint8_t>(q, act.size());
      dequantize_rows_fp8(hq.data(), scales.data(), true, n, F, got.data());
      EXPECT_LT(rel_l2(got, quant_dequant(act, n, F)), 5e-3);
    }
  }
}

TEST(CudaElementwise, SiluMulBf16ManyRowsAndWideRows) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  // 70,000 rows: more than a grid's 65,535 y blocks (blocks loop over rows). F = 2056: two
  // x blocks a row, the second nearly idle. F = 12: the scalar kernel.
  struct Case {
    int n, F;
  };
  for (const Case c : {Case{70000, 8}, Case{3, 2056}, Case{17, 14336}, Case{5, 12}}) {
    SCOPED_TRACE("n = " + std::to_string(c.n) + " F = " + std::to_string(c.F));
    const std::vector<float> gu = rounded(random_vector(size_t(c.n) * 2 * c.F, 2.0f), dt);
    std::vector<float> ref(size_t(c.n) * c.F);
    for (int r = 0; r < c.n; ++r) {
      for (int f = 0; f < c.F; ++f) {
        ref[size_t(r) * c.F + f] =
            cpu::silu(gu[size_t(r) * 2 * c.F + f]) * gu[size_t(r) * 2 * c.F + c.F + f];
      }
    }
    DeviceBuffer dgu = upload(to_half(gu, dt)), dact = upload(std::vector<uint16_t>(
                                                       ref.size(), 0x7fc0));  // NaN poison
    ASSERT_EQ(cuda::silu_mul(dgu.get(), c.n, c.F, dact.get(), dt, nullptr), cudaSuccess);
    EXPECT_LT(rel_l2(from_half(download<uint16_t>(dact, ref.size()), dt), ref), kBf16OpTol);
  }
}

TEST(CudaElementwise, CombineVectorAndScalarPaths) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  // K = 1, 2, 4: the float4 kernel (H = 4100: a second unrolled round of 1,025 chunks);
  // K = 3 and H = 98 (H % 4 != 0): the scalar one.
  for (const int K : {1, 2, 3, 4}) {
    for (const int H : {4100, 98, 8}) {
      for (const int T : {1, 17}) {
        SCOPED_TRACE("K = " + std::to_string(K) + " H = " + std::to_string(H) +
                     " T = " + std::to_string(T));
        const int n = T * K, E = 8;
        const std::vector<float> y = random_vector(size_t(n) * H);
        std::vector<int32_t> experts(n), pos(n);
        std::vector<float> w(n);
        for (int t = 0; t < T; ++t) {
          std::vector<int32_t> pick(E);
          std::iota(pick.begin(), pick.end(), 0);
          std::shuffle(pick.begin(), pick.end(), rng());
          for (int k = 0; k < K; ++k) {
            experts[t * K + k] = pick[k];
            w[t * K + k] = float(rng()() % 1000) / 1000.0f;
          }
        }
        std::iota(pos.begin(), pos.end(), 0);
        std::shuffle(pos.begin(), pos.end(), rng());
        std::vector<float> ref(size_t(T) * H, 0.0f);
        for (int t = 0; t < T; ++t) {
          std::vector<int> order(K);
          std::iota(order.begin(), order.end(), 0);
          std::sort(order.begin(), order.end(),
                    [&](int a, int b) { return experts[t * K + a] < experts[t * K + b]; });
          for (int k : order) {
            for (int h = 0; h < H; ++h) {
              ref[size_t(t) * H + h] += y[size_t(pos[t * K + k]) * H + h] * w[t * K + k];
            }
          }
        }
        DeviceBuffer dy = upload(y), de = upload(experts), dw = upload(w), dp = upload(pos),
                     dout(ref.size() * 4);
        ASSERT_EQ(cuda::moe_combine(dy.as<float>(), de.as<int32_t>(), dw.as<float>(),
                                    dp.as<int32_t>(), T, K, H, dout.as<float>(), nullptr),
                  cudaSuccess);
        EXPECT_LT(rel_l2(download<float>(dout, ref.size()), ref), 1e-6);
      }
    }
  }
}

TEST(CudaElementwise, ScaleRowsColsIsExact) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (const int N : {8, 4100}) {
    for (const int R : {1, 17}) {
      const std::vector<float> y = random_vector(size_t(R) * N), row = random_vector(R),
                               col = random_vector(N);
      std::vector<float> ref(y.size());
      for (int r = 0; r < R; ++r) {
        for (int c = 0; c < N; ++c) {
          ref[size_t(r) * N + c] = y[size_t(r) * N + c] * (row[r] * col[c]);
        }
      }
      DeviceBuffer dy = upload(y), dr = upload(row), dc = upload(col);
      ASSERT_EQ(cuda::scale_rows_cols(dy.as<float>(), R, N, dr.as<float>(), dc.as<float>(),
                                      nullptr),
                cudaSuccess);
      EXPECT_EQ(download<float>(dy, ref.size()), ref) << "R = " << R << " N = " << N;
    }
  }
}

// RoPE + K/V write with padding tokens (slot -1: q rotated, no cache write), into BF16 and
// E4M3 caches, for the vector kernel (D = 256, 64, 16) and the scalar one (D = 24, and a qkv
// pointer that is not 16-byte aligned); `scaled`: qkv holds unscaled FP8 GEMM sums, each
// element standing for itself times row[t] * col[j].
TEST(CudaElementwise, RopeCachesPaddingSlotsAndFallbacks) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const DType dt = DType::kBF16;
  struct Shape {
    int Hq, Hkv, D;
    bool misaligned;
  };
  for (const Shape s : {Shape{4, 2, 256, false}, Shape{5, 1, 64, false}, Shape{2, 2, 16, false},
                        Shape{3, 1, 24, false}, Shape{4, 2, 64, true}}) {
    for (const bool fp8 : {false, true}) for (const bool scaled : {false, true}) {
      const int T = 19, W = (s.Hq + 2 * s.Hkv) * s.D, N = T + 5;
      SCOPED_TRACE("D = " + std::to_string(s.D) + (fp8 ? " e4m3" : " bf16") +
                   (s.misaligned ? " misaligned" : "") + (scaled ? " scaled" : ""));
      const std::vector<float> raw = rounded(random_vector(size_t(T) * W, 64.0f), dt);
      std::vector<float> row_scale(T), col_scale(W), qkv = raw;  // qkv: the values meant
      for (float& x : row_scale) x = 0.01f + std::abs(random_vector(1)[0]) * 0.05f;
      for (float& x : col_scale) x = 0.001f + std::abs(random_vector(1)[0]) * 0.02f;
      if (scaled) {
        for (int t = 0; t < T; ++t) {
          for (int j = 0; j < W; ++j) {
            qkv[size_t(t) * W + j] = raw[size_t(t) * W + j] * (row_scale[t] * col_scale[j]);
          }
        }
      } else {
        qkv = rounded(random_vector(size_t(T) * W), dt);
      }
      std::vector<int32_t> pos(T);
      for (int& p : pos) p = int(rng()() % 30000);
      std::vector<int64_t> slots = random_slots(T, N);
      slots[2] = slots[11] = -1;
      const std::vector<float> inv = cpu::rope_inv_freq(s.D, 1e6);
      const size_t shift = s.misaligned ? 4 : 0;  // elements: 8 bytes off 16-byte alignment
      std::vector<uint16_t> host(qkv.size() + shift);
      const std::vector<uint16_t> bits = to_half(scaled ? raw : qkv, dt);
      std::copy(bits.begin(), bits.end(), host.begin() + shift);
      DeviceBuffer d_qkv = upload(host), d_pos = upload(pos), d_slots = upload(slots),
                   d_inv = upload(inv), d_row = upload(row_scale), d_col = upload(col_scale);
      const size_t pool = size_t(cuda::kv_pool_slots(N)) * s.Hkv * s.D, el = fp8 ? 1 : 2;
      DeviceBuffer d_k(pool * el), d_v(pool * el);
      MIXSERVE_CUDA_CHECK(cudaMemset(d_k.get(), 0x7f, pool * el));  // poison
      MIXSERVE_CUDA_CHECK(cudaMemset(d_v.get(), 0x7f, pool * el));
      const cuda::KvFp8Scales scales{0.02f, 0.02f};
      ASSERT_EQ(cuda::rope_write_kv(d_qkv.as<uint16_t>(shift * 2), dt, T, s.Hq, s.Hkv, s.D,
                                    d_pos.as<int32_t>(), d_slots.as<int64_t>(), d_inv.as<float>(),
                                    d_k.get(), d_v.get(), nullptr, fp8 ? &scales : nullptr,
                                    scaled ? d_row.as<float>() : nullptr,
                                    scaled ? d_col.as<float>() : nullptr),
                cudaSuccess);
      const std::vector<uint16_t> out = download<uint16_t>(d_qkv, host.size());
      const std::vector<float> got_qkv =
          from_half(std::vector<uint16_t>(out.begin() + shift, out.end()), dt);
      // Slot-major [N, Hkv, D] bytes from the cache's tiles.
      const std::vector<uint8_t> kb =
                                     from_device_kv(download<uint8_t>(d_k, pool * el), N, s.Hkv,
                                                    s.D * int(el)),
                                 vb = from_device_kv(download<uint8_t>(d_v, pool * el), N, s.Hkv,
                                                     s.D * int(el));
      auto cache_value = [&](const std::vector<uint8_t>& b, size_t i, float scale) {
        if (fp8) return fp8e4m3_to_float(b[i]) * scale;
        uint16_t h;
        std::memcpy(&h, b.data() + 2 * i, 2);
        return from_half_bits(h, dt);
      };
      std::vector<bool> written(N, false);
      std::vector<float> ref_q, got_q, ref_k, got_k;
      for (int t = 0; t < T; ++t) {
        std::vector<float> row(qkv.begin() + size_t(t) * W, qkv.begin() + size_t(t + 1) * W);
        cpu::apply_rope(row.data(), s.Hq + s.Hkv, s.D, pos[t], inv.data());
        for (int i = 0; i < s.Hq * s.D; ++i) {
          ref_q.push_back(row[i]);
          got_q.push_back(got_qkv[size_t(t) * W + i]);
        }
        if (slots[t] < 0) continue;
        written[slots[t]] = true;
        const size_t base = size_t(slots[t]) * s.Hkv * s.D;
        for (int i = 0; i < s.Hkv * s.D; ++i) {
          ref_k.push_back(row[s.Hq * s.D + i]);
          got_k.push_back(cache_value(kb, base + i, scales.k_scale));
          const float v = row[(s.Hq + s.Hkv) * s.D + i];
          if (fp8) {
            ASSERT_EQ(vb[base + i], float_to_fp8e4m3(v * (1.0f / scales.v_scale))) << "V byte";
          } else {
            ASSERT_EQ(cache_value(vb, base + i, 1.0f), rounded(std::vector<float>{v}, dt)[0])
                << "V copied exactly";
          }
        }
      }
      for (int slot = 0; slot < N; ++slot) {  // untouched slots keep the poison
        if (written[slot]) continue;
        for (int i = 0; i < s.Hkv * s.D; ++i) {
          ASSERT_EQ(kb[(size_t(slot) * s.Hkv * s.D + i) * el], 0x7f) << "slot " << slot;
          ASSERT_EQ(vb[(size_t(slot) * s.Hkv * s.D + i) * el], 0x7f) << "slot " << slot;
        }
      }
      EXPECT_LT(rel_l2(got_q, ref_q), kBf16OpTol);
      EXPECT_LT(rel_l2(got_k, ref_k), fp8 ? 5e-2 : kBf16OpTol);
    }
  }
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
