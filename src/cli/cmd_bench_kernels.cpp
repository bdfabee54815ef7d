// `mixserve bench-kernels`: times the element-wise CUDA kernels of the forward pass alone, at
// Mixtral 8x7B sizes (hidden 4096, FFN 14336, 32 q / 8 kv heads of 128, top-2), through the
// same launch functions the model calls (kernels.h, fp8_kernels.h), BF16 activations.
//
// Method: CUDA events around each launch; before every timed launch a 256 MB read
// (l2_flush.h) evicts the 50 MB L2, clean, so each launch reads its inputs from HBM and writes
// back no dirty lines but its own (the forward pass may find part of a GEMM's output still in
// L2: these rates are the cold-cache ones). Warm-up launches, then the median of --iters.
// Rate = logical bytes / time, counting every byte the kernel must read or write once
// (per-row tensors once per row, per-launch vectors such as norm weights once), the way a
// device-to-device copy counts read + write; such a copy (cudaMemcpyAsync), timed the same
// way, is reported as the reference rate.
//
// Check: the first launch of each kernel is compared with a host reference on its first rows
// (tokens) before the timing; a mismatch is reported and the command exits with status 1.
#ifdef MIXSERVE_HAVE_CUDA

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ops.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kv_layout.h"
#include "backend/cuda/l2_flush.h"
#include "backend/cuda/moe_padded_fp8.h"
#include "cli/command.h"
#include "model/dtype.h"
#include "model/fp8_quant.h"
#include "util/error.h"
#include "util/rel_l2.h"

namespace mixserve::cli {
namespace {

using nlohmann::json;
using cuda::DeviceBuffer;

constexpr int kH = 4096, kF = 14336, kHq = 32, kHkv = 8, kD = 128, kK = 2;
constexpr int kCheckRows = 64;
constexpr size_t kFlushBytes = size_t(256) << 20;

struct Ctx {
  int iters = 50;
  DeviceBuffer flush{kFlushBytes}, sink{4};
  json results = json::array();
  bool all_ok = true;
};

// Uniform values in [-a, a) from a fixed seed (host side, fast enough for 10^8 values).
std::vector<float> host_random(size_t n, float a, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (float& x : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x = a * (float((s >> 40) & 0xffffff) / float(1 << 23) - 1.0f);
  }
  return v;
}

template <typename V>
DeviceBuffer upload(const std::vector<V>& v) {
  DeviceBuffer b(v.size() * sizeof(V));
  MIXSERVE_CUDA_CHECK(cudaMemcpy(b.get(), v.data(), b.bytes(), cudaMemcpyHostToDevice));
  return b;
}

template <typename V>
std::vector<V> download(const void* p, size_t n) {
  std::vector<V> v(n);
  MIXSERVE_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(V), cudaMemcpyDeviceToHost));
  return v;
}

// Uniform BF16 values in [-a, a) drawn on the device (key: the draw).
void fill_bf16(DeviceBuffer& b, size_t n, uint64_t key, double a) {
  MIXSERVE_CUDA_CHECK(cuda::fill_synthetic(b.get(), DType::kBF16, int64_t(n), key, a, false,
                                           nullptr));
}

std::vector<float> bf16_download(const void* p, size_t n) {
  const std::vector<uint16_t> h = download<uint16_t>(p, n);
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = bf16_to_float(h[i]);
  return f;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& f) {
  std::vector<uint16_t> h(f.size());
  for (size_t i = 0; i < f.size(); ++i) h[i] = float_to_bf16(f[i]);
  return h;
}

// A kernel's check: relative L2 error of its output against the host reference, and an
// FNV-1a hash of the output's float bits (equal hashes from two builds: the same results).
struct Check {
  double err = 0;
  uint64_t hash = 0;
};
Check check(const std::vector<float>& got, const std::vector<float>& ref) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const float f : got) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    h = (h ^ bits) * 0x100000001b3ull;
  }
  return {rel_l2(got, ref), h};
}

std::vector<float> dequant(const std::vector<uint8_t>& q, const std::vector<float>& s, int64_t R,
                           int64_t C) {
  std::vector<float> out(q.size());
  dequantize_rows_fp8(q.data(), s.data(), true, R, C, out.data());
  return out;
}

// Host quantization of ref [R, C], dequantized: what an exact kernel's q would decode to.
std::vector<float> quant_dequant(const std::vector<float>& ref, int64_t R, int64_t C) {
  std::vector<uint8_t> q(ref.size());
  std::vector<float> s(R);
  quantize_rows_fp8(ref.data(), R, C, q.data(), s.data());
  return dequant(q, s, R, C);
}

// Median microseconds of ctx.iters launches, each after an L2 flush (outside the events).
double time_us(Ctx& ctx, const std::function<cudaError_t()>& launch) {
  cudaEvent_t e0, e1;
  MIXSERVE_CUDA_CHECK(cudaEventCreate(&e0));
  MIXSERVE_CUDA_CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) MIXSERVE_CUDA_CHECK(launch());
  std::vector<double> us;
  for (int i = 0; i < ctx.iters; ++i) {
    MIXSERVE_CUDA_CHECK(
        cuda::read_through(ctx.flush.get(), kFlushBytes, ctx.sink.as<uint32_t>(), nullptr));
    MIXSERVE_CUDA_CHECK(cudaEventRecord(e0));
    MIXSERVE_CUDA_CHECK(launch());
    MIXSERVE_CUDA_CHECK(cudaEventRecord(e1));
    MIXSERVE_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    MIXSERVE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    us.push_back(ms * 1e3);
  }
  MIXSERVE_CUDA_CHECK(cudaEventDestroy(e0));
  MIXSERVE_CUDA_CHECK(cudaEventDestroy(e1));
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

// Records one kernel's result. err: the check's relative L2 error, ok: whether it is in bounds.
void report(Ctx& ctx, const std::string& kernel, int tokens, int64_t rows, double bytes,
            double us, const Check& c, double tol) {
  const double err = c.err;
  const bool ok = err <= tol;
  const double tbs = bytes / (us * 1e-6) / 1e12;
  std::printf("%-26s %6d %7lld %9.1f MB %9.1f us %6.2f TB/s  check %.2e %s\n", kernel.c_str(),
              tokens, static_cast<long long>(rows), bytes / 1e6, us, tbs, err,
              ok ? "ok" : "FAILED");
  ctx.all_ok = ctx.all_ok && ok;
  ctx.results.push_back({{"kernel", kernel},
                         {"tokens", tokens},
                         {"rows", rows},
                         {"bytes", bytes},
                         {"median_us", us},
                         {"tb_per_s", tbs},
                         {"check_rel_l2", err},
                         {"output_hash", c.hash},
                         {"check_tol", tol},
                         {"check_ok", ok}});
}

// add_rms_norm_fp8 as the FP8 MoE layer runs it: x += delta, out_half and (q, scales).
// Bytes: x and delta read, x written (4 B each), out_half 2 B, q 1 B an element, a scale a
// row; the weight vector once.
void bench_norm(Ctx& ctx, int T) {
  const size_t n = size_t(T) * kH;
  const std::vector<float> x = host_random(n, 1.0f, 1), delta = host_random(n, 0.5f, 2);
  std::vector<float> w = host_random(kH, 0.5f, 3);
  for (float& v : w) v = bf16_to_float(float_to_bf16(1.0f + v));
  DeviceBuffer dx = upload(x), dd = upload(delta), dw = upload(to_bf16(w)), dh(n * 2), dq(n),
               ds(size_t(T) * 4);
  auto launch = [&] {
    return cuda::add_rms_norm_fp8(dx.as<float>(), dd.as<float>(), T, kH, dw.get(), 1e-5f,
                                  dh.get(), dq.as<uint8_t>(), ds.as<float>(), DType::kBF16,
                                  nullptr);
  };
  MIXSERVE_CUDA_CHECK(launch());
  const int R = std::min(T, kCheckRows);
  std::vector<float> ref(size_t(R) * kH);
  for (int r = 0; r < R; ++r) {
    double ss = 0;
    for (int h = 0; h < kH; ++h) {
      const float v = x[size_t(r) * kH + h] + delta[size_t(r) * kH + h];
      ss += double(v) * v;
    }
    const float inv = 1.0f / std::sqrt(float(ss / kH) + 1e-5f);
    for (int h = 0; h < kH; ++h) {
      ref[size_t(r) * kH + h] = w[h] * ((x[size_t(r) * kH + h] + delta[size_t(r) * kH + h]) * inv);
    }
  }
  const std::vector<float> got =
      dequant(download<uint8_t>(dq.get(), ref.size()), download<float>(ds.get(), R), R, kH);
  const Check cq = check(got, quant_dequant(ref, R, kH)),
              ch = check(bf16_download(dh.get(), ref.size()), ref);
  const Check err{std::max(cq.err, ch.err), cq.hash * 31 + ch.hash};
  const double bytes = double(T) * (15.0 * kH + 4) + 2.0 * kH;
  report(ctx, "add_rms_norm_fp8", T, T, bytes, time_us(ctx, launch), err, 1e-2);
}

// SiLU(gate) * up over the T*K routed rows of a [n, 2F] BF16 w1|w3 output: FP8 + row scales
// (scaled GEMMs, prefill sizes), the same on unscaled GEMM sums (in_row / in_col, decode
// sizes), and the BF16 path. Bytes: 4F read a row; F + 4 (FP8) or 2F (BF16) written.
void bench_silu(Ctx& ctx, int T) {
  const int n = T * kK;
  const size_t elems = size_t(n) * 2 * kF;
  DeviceBuffer gu(elems * 2), q(size_t(n) * kF), s(size_t(n) * 4), act(size_t(n) * kF * 2);
  fill_bf16(gu, elems, 7, 3.0);
  const int R = std::min(n, kCheckRows);
  const std::vector<float> in = bf16_download(gu.get(), size_t(R) * 2 * kF);
  std::vector<float> in_row = host_random(n, 0.25f, 8), in_col = host_random(2 * kF, 0.25f, 9);
  for (float& v : in_row) v += 1.0f;
  for (float& v : in_col) v += 1.0f;
  DeviceBuffer drow = upload(in_row), dcol = upload(in_col);
  // Cases: all n rows; one expert's share (n / 8 rows, uniform routing over 8 experts: the
  // size of the model's per-expert launches); all rows from an unscaled GEMM.
  struct Case {
    const char* name;
    int rows;
    bool unscaled;
  };
  for (const Case c : {Case{"silu_mul_fp8", n, false}, Case{"silu_mul_fp8 rows/8", n / 8, false},
                       Case{"silu_mul_fp8 unscaled", n, true}}) {
    if (c.rows < 1) continue;
    auto launch = [&] {
      return cuda::silu_mul_fp8(gu.get(), c.rows, kF, q.as<uint8_t>(), s.as<float>(), nullptr, 0,
                                DType::kBF16, nullptr, c.unscaled ? drow.as<float>() : nullptr,
                                c.unscaled ? dcol.as<float>() : nullptr);
    };
    MIXSERVE_CUDA_CHECK(cudaMemset(q.get(), 0xff, size_t(R) * kF));  // NaN poison
    MIXSERVE_CUDA_CHECK(launch());
    const int Rc = std::min(R, c.rows);
    std::vector<float> ref(size_t(Rc) * kF);
    for (int r = 0; r < Rc; ++r) {
      for (int f = 0; f < kF; ++f) {
        float a = in[size_t(r) * 2 * kF + f], b = in[size_t(r) * 2 * kF + kF + f];
        if (c.unscaled) {
          a *= in_row[r] * in_col[f];
          b *= in_row[r] * in_col[kF + f];
        }
        ref[size_t(r) * kF + f] = a / (1.0f + std::exp(-a)) * b;
      }
    }
    const std::vector<float> got =
        dequant(download<uint8_t>(q.get(), ref.size()), download<float>(s.get(), Rc), Rc, kF);
    report(ctx, c.name, T, c.rows,
           double(c.rows) * (5.0 * kF + 4) + (c.unscaled ? 4.0 * c.rows + 8.0 * kF : 0.0),
           time_us(ctx, launch), check(got, quant_dequant(ref, Rc, kF)), 1e-2);
  }
  // The copy rate of this method: n * F * 2 bytes copied, read + written counted.
  const size_t copy_bytes = size_t(n) * kF * 2;
  auto copy = [&] {
    return cudaMemcpyAsync(act.get(), gu.get(), copy_bytes, cudaMemcpyDeviceToDevice, nullptr);
  };
  report(ctx, "copy d2d (reference)", T, n, 2.0 * copy_bytes, time_us(ctx, copy), Check{}, 0.0);
  auto launch = [&] { return cuda::silu_mul(gu.get(), n, kF, act.get(), DType::kBF16, nullptr); };
  MIXSERVE_CUDA_CHECK(launch());
  std::vector<float> ref(size_t(R) * kF);
  for (int r = 0; r < R; ++r) {
    for (int f = 0; f < kF; ++f) {
      ref[size_t(r) * kF + f] =
          cpu::silu(in[size_t(r) * 2 * kF + f]) * in[size_t(r) * 2 * kF + kF + f];
    }
  }
  report(ctx, "silu_mul bf16", T, n, 6.0 * n * kF, time_us(ctx, launch),
         check(bf16_download(act.get(), ref.size()), ref), 1e-2);
}

// The counted grouped MoE's SiLU·mul (moe_padded_fp8.h) on the unscaled w1|w3 sums of T * K
// pairs over 8 experts: G = 8 groups of C = the largest count rounded up to 16 rows, counts
// uneven by a few rows as routing makes them (the padding rows get zeros). Bytes: 4F read
// and F + 4 written a live row, F + 4 written a padding row, the 8 groups' 2F scales.
void bench_silu_grouped(Ctx& ctx, int T) {
  constexpr int G = 8;
  const int pairs = T * kK;
  std::vector<int32_t> count(G);
  const int delta[G] = {-12, 12, -4, 4, 0, -8, 8, 0};
  for (int g = 0; g < G; ++g) count[g] = std::max(1, pairs / G + delta[g] * pairs / 4096);
  const int C = (*std::max_element(count.begin(), count.end()) + 15) / 16 * 16;
  const size_t rows = size_t(G) * C;
  int64_t live = 0;
  for (const int n : count) live += n;
  std::vector<int32_t> groups(2 * G);  // group_expert (group g = expert g), then group_count
  for (int g = 0; g < G; ++g) groups[g] = g, groups[G + g] = count[g];
  DeviceBuffer raw(rows * 2 * kF * 2), q(rows * kF), s(rows * 4), dgroups = upload(groups);
  fill_bf16(raw, rows * 2 * kF, 21, 3.0);
  std::vector<float> xs = host_random(rows, 0.25f, 22), ws = host_random(size_t(G) * 2 * kF, 0.25f, 23);
  for (float& v : xs) v += 1.0f;
  for (float& v : ws) v += 1.0f;
  DeviceBuffer dxs = upload(xs), dws = upload(ws);
  auto launch = [&] {
    return cuda::silu_mul_grouped_fp8(raw.get(), dxs.as<float>(), dws.as<float>(),
                                      dgroups.as<int32_t>(), dgroups.as<int32_t>() + G, G, C, kF,
                                      q.as<uint8_t>(), s.as<float>(), nullptr);
  };
  MIXSERVE_CUDA_CHECK(cudaMemset(q.get(), 0xff, rows * kF));  // NaN poison
  MIXSERVE_CUDA_CHECK(launch());
  // Check: group 0's first rows (live) against the host, and the last group's last row
  // (padding, count < C for it) all zeros with scale 0.
  const int R = std::min(count[0], kCheckRows);
  const std::vector<float> in = bf16_download(raw.get(), size_t(R) * 2 * kF);
  std::vector<float> ref(size_t(R) * kF);
  for (int r = 0; r < R; ++r) {
    for (int f = 0; f < kF; ++f) {
      const float a = in[size_t(r) * 2 * kF + f] * xs[r] * ws[f];
      const float b = in[size_t(r) * 2 * kF + kF + f] * xs[r] * ws[kF + f];
      ref[size_t(r) * kF + f] = a / (1.0f + std::exp(-a)) * b;
    }
  }
  Check ck = check(dequant(download<uint8_t>(q.get(), ref.size()), download<float>(s.get(), R), R,
                           kF),
                   quant_dequant(ref, R, kF));
  if (count[G - 1] < C) {
    const size_t last = rows - 1;
    const std::vector<uint8_t> pad = download<uint8_t>(q.as<uint8_t>() + last * kF, kF);
    const std::vector<float> pad_scale = download<float>(s.as<float>() + last, 1);
    if (pad_scale[0] != 0.0f || std::any_of(pad.begin(), pad.end(), [](uint8_t b) { return b; })) {
      ck.err = 1.0;  // a padding row not zeroed
    }
  }
  report(ctx, "silu_mul_grouped_fp8", T, int64_t(rows),
         double(live) * (4.0 * kF) + double(rows) * (kF + 4.0) + 8.0 * G * kF + 4.0 * live,
         time_us(ctx, launch), ck, 1e-2);
}

// The routing kernels after top-k: the counting sort of the T*K pairs by expert, and the sort
// followed by the groups in count order with the pairs mapped to their grouped rows, as a
// counted layer runs them (MIXSERVE_MOE_SORT=tiled: the tiled sort and many-block group
// kernel, else the single-block ones). Routing: a third
// of the tokens on experts 0 and 1, the rest uniform. Bytes: the pairs' experts read, token
// and position written (12 B a pair; the group's read and write of the positions, 12 B more).
// Check: every pair's final grouped row against a stable sort on the host (0 or 1).
void bench_routing(Ctx& ctx, int T) {
  constexpr int E = 8;
  const int pairs = T * kK;
  std::vector<int32_t> experts(pairs);
  uint64_t r = 12345;
  for (int t = 0; t < T; ++t) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    const int first = t % 3 == 0 ? 0 : int((r >> 33) % E);
    for (int k = 0; k < kK; ++k) experts[t * kK + k] = (first + k * (t % 3 == 0 ? 1 : 5)) % E;
  }
  std::vector<int32_t> n(E, 0), rank(pairs);
  for (int p = 0; p < pairs; ++p) rank[p] = n[experts[p]]++;
  std::vector<int> order(E);
  for (int e = 0; e < E; ++e) order[e] = e;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return n[a] > n[b]; });
  std::vector<int32_t> group_of(E);
  for (int g = 0; g < E; ++g) group_of[order[g]] = g;
  const int C = (*std::max_element(n.begin(), n.end()) + 15) / 16 * 16;
  DeviceBuffer dex = upload(experts), counts(E * 4), offsets((E + 1) * 4), sorted(pairs * 4),
      pos(pairs * 4), groups(3 * 64 * 4), ptrs(6 * 64 * sizeof(void*));
  auto sort = [&] {
    return cuda::moe_sort(dex.as<int32_t>(), T, kK, E, counts.as<int32_t>(),
                          offsets.as<int32_t>(), sorted.as<int32_t>(), pos.as<int32_t>(),
                          nullptr);
  };
  cuda::MoeGroupFp8Args a;
  a.counts = counts.as<int32_t>();
  a.E = a.G = E;
  a.C = C;
  a.by_count = true;
  a.group_expert = groups.as<int32_t>();
  a.group_count = a.group_expert + 64;
  a.expert_group = a.group_expert + 128;
  a.ptrs = ptrs.as<const void*>();
  a.H = kH;
  a.F = kF;
  a.experts = dex.as<int32_t>();
  a.offsets = offsets.as<int32_t>();
  a.pair_pos = pos.as<int32_t>();
  a.pairs = pairs;
  auto sort_and_group = [&] {
    const cudaError_t e = sort();
    return e != cudaSuccess ? e : cuda::moe_group_experts_fp8(a, nullptr);
  };
  std::vector<int32_t> offset(E + 1, 0);
  for (int e = 0; e < E; ++e) offset[e + 1] = offset[e] + n[e];
  MIXSERVE_CUDA_CHECK(sort());
  const std::vector<int32_t> sorted_pos = download<int32_t>(pos.get(), pairs);
  Check sort_ck;
  for (int p = 0; p < pairs; ++p) {
    if (sorted_pos[p] != offset[experts[p]] + rank[p]) sort_ck.err = 1.0;
  }
  MIXSERVE_CUDA_CHECK(sort_and_group());
  const std::vector<int32_t> got = download<int32_t>(pos.get(), pairs);
  Check ck;
  for (int p = 0; p < pairs; ++p) {
    if (got[p] != group_of[experts[p]] * C + rank[p]) ck.err = 1.0;
  }
  report(ctx, "moe_sort", T, pairs, 12.0 * pairs, time_us(ctx, sort), sort_ck, 0.0);
  report(ctx, "moe_sort + group", T, pairs, 24.0 * pairs, time_us(ctx, sort_and_group), ck, 0.0);
}

// Weighted combine of each token's K = 2 expert rows (float) in ascending expert order.
// Bytes: K rows read and one written (4H each), plus expert, weight and row indices.
// scale_rows_cols on the same [T*K, H] float rows: 8 B an element, a row scale, the column
// scales once.
void bench_combine(Ctx& ctx, int T) {
  const int n = T * kK;
  const std::vector<float> y = host_random(size_t(n) * kH, 1.0f, 11);
  std::vector<int32_t> experts(n), pos(n);
  std::vector<float> w(n);
  std::mt19937 gen(5);
  for (int t = 0; t < T; ++t) {
    experts[t * kK] = int(gen() % 8);
    experts[t * kK + 1] = (experts[t * kK] + 1 + int(gen() % 7)) % 8;
    w[t * kK] = float(gen() % 1000) / 1000.0f;
    w[t * kK + 1] = 1.0f - w[t * kK];
  }
  std::iota(pos.begin(), pos.end(), 0);
  std::shuffle(pos.begin(), pos.end(), gen);
  DeviceBuffer dy = upload(y), de = upload(experts), dw = upload(w), dp = upload(pos),
               dout(size_t(T) * kH * 4);
  auto launch = [&] {
    return cuda::moe_combine(dy.as<float>(), de.as<int32_t>(), dw.as<float>(), dp.as<int32_t>(),
                             T, kK, kH, dout.as<float>(), nullptr);
  };
  MIXSERVE_CUDA_CHECK(launch());
  const int R = std::min(T, kCheckRows);
  std::vector<float> ref(size_t(R) * kH, 0.0f);
  for (int t = 0; t < R; ++t) {
    const int lo = experts[t * kK] < experts[t * kK + 1] ? 0 : 1;
    for (int k : {lo, 1 - lo}) {
      for (int h = 0; h < kH; ++h) {
        ref[size_t(t) * kH + h] += y[size_t(pos[t * kK + k]) * kH + h] * w[t * kK + k];
      }
    }
  }
  report(ctx, "moe_combine", T, T, double(T) * (4.0 * kH * (kK + 1) + 12.0 * kK),
         time_us(ctx, launch), check(download<float>(dout.get(), ref.size()), ref), 1e-6);

  std::vector<float> rs = host_random(n, 1e-3f, 12), cs = host_random(kH, 1e-3f, 13);
  for (float& v : rs) v += 1.0f;  // near 1: the timed launches scale y again and again
  for (float& v : cs) v += 1.0f;
  DeviceBuffer drs = upload(rs), dcs = upload(cs);
  auto scale = [&] {
    return cuda::scale_rows_cols(dy.as<float>(), n, kH, drs.as<float>(), dcs.as<float>(), nullptr);
  };
  MIXSERVE_CUDA_CHECK(scale());
  std::vector<float> sref(size_t(R) * kH);
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < kH; ++h) sref[size_t(r) * kH + h] = y[size_t(r) * kH + h] * (rs[r] * cs[h]);
  }
  report(ctx, "scale_rows_cols", T, n, double(n) * (8.0 * kH + 4) + 4.0 * kH, time_us(ctx, scale),
         check(download<float>(dy.get(), sref.size()), sref), 1e-6);
}

// RoPE on q and k in place, k and v into a paged cache at shuffled slots (BF16 and E4M3
// caches). Bytes: the token's q|k|v read (2 B), q written back, k and v written to the cache
// (2 B or 1 B), a position and a slot read.
void bench_rope(Ctx& ctx, int T) {
  const int W = (kHq + 2 * kHkv) * kD;
  const size_t elems = size_t(T) * W;
  DeviceBuffer qkv(elems * 2);
  fill_bf16(qkv, elems, 21, 2.0);
  std::mt19937 gen(6);
  std::vector<int32_t> positions(T);
  for (int32_t& p : positions) p = int(gen() % 32768);
  std::vector<int64_t> slots(T);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), gen);
  const std::vector<float> inv = cpu::rope_inv_freq(kD, 1e6);
  DeviceBuffer dpos = upload(positions), dslots = upload(slots), dinv = upload(inv);
  const size_t pool = size_t(cuda::kv_pool_slots(T)) * kHkv * kD;
  const int R = std::min(T, kCheckRows);
  for (const bool fp8 : {false, true}) {
    const cuda::KvFp8Scales scales{0.02f, 0.015f};
    DeviceBuffer k(pool * 2), v(pool * 2);
    const std::vector<float> before = bf16_download(qkv.get(), size_t(R) * W);
    auto launch = [&] {
      return cuda::rope_write_kv(qkv.get(), DType::kBF16, T, kHq, kHkv, kD, dpos.as<int32_t>(),
                                 dslots.as<int64_t>(), dinv.as<float>(), k.get(), v.get(),
                                 nullptr, fp8 ? &scales : nullptr);
    };
    MIXSERVE_CUDA_CHECK(launch());
    const std::vector<float> after = bf16_download(qkv.get(), size_t(R) * W);
    std::vector<float> ref, got;
    for (int t = 0; t < R; ++t) {
      std::vector<float> row(before.begin() + size_t(t) * W, before.begin() + size_t(t + 1) * W);
      cpu::apply_rope(row.data(), kHq + kHkv, kD, positions[t], inv.data());
      for (int i = 0; i < kHq * kD; ++i) {
        ref.push_back(row[i]);
        got.push_back(after[size_t(t) * W + i]);
      }
      const size_t kv = size_t(kHkv) * kD;
      std::vector<float> kc, vc;
      for (int g = 0; g < kHkv; ++g) {  // head g's row of the token's slot (kv_layout.h)
        const size_t at = size_t(cuda::kv_row(slots[t], g, kHkv)) * kD;
        if (fp8) {
          for (uint8_t b : download<uint8_t>(k.as<uint8_t>(at), kD))
            kc.push_back(fp8e4m3_to_float(b) * scales.k_scale);
          for (uint8_t b : download<uint8_t>(v.as<uint8_t>(at), kD))
            vc.push_back(fp8e4m3_to_float(b) * scales.v_scale);
        } else {
          for (float f : bf16_download(k.as<uint16_t>(at * 2), kD)) kc.push_back(f);
          for (float f : bf16_download(v.as<uint16_t>(at * 2), kD)) vc.push_back(f);
        }
      }
      for (size_t i = 0; i < kv; ++i) {
        ref.push_back(row[kHq * kD + i]);
        got.push_back(kc[i]);
        ref.push_back(row[(kHq + kHkv) * kD + i]);
        got.push_back(vc[i]);
      }
    }
    const double cache_el = fp8 ? 1.0 : 2.0;
    const double bytes = double(T) * (2.0 * W + 2.0 * kHq * kD + 2.0 * kHkv * kD * cache_el + 12);
    report(ctx, fp8 ? "rope_write_kv e4m3 cache" : "rope_write_kv bf16 cache", T, T, bytes,
           time_us(ctx, launch), check(got, ref), fp8 ? 5e-2 : 1e-2);
  }
}

// Per-row FP8 quantization of the attention output [T, Hq * D] BF16: 2 B read, 1 B written an
// element, a scale a row.
void bench_quantize(Ctx& ctx, int T) {
  const int C = kHq * kD;
  const size_t elems = size_t(T) * C;
  DeviceBuffer src(elems * 2), q(elems), s(size_t(T) * 4);
  fill_bf16(src, elems, 31, 2.0);
  auto launch = [&] {
    return cuda::quantize_rows_fp8(src.get(), DType::kBF16, T, C, q.as<uint8_t>(), s.as<float>(),
                                   nullptr);
  };
  MIXSERVE_CUDA_CHECK(launch());
  const int R = std::min(T, kCheckRows);
  const std::vector<float> ref = bf16_download(src.get(), size_t(R) * C);
  const std::vector<float> got =
      dequant(download<uint8_t>(q.get(), ref.size()), download<float>(s.get(), R), R, C);
  report(ctx, "quantize_rows_fp8", T, T, double(T) * (3.0 * C + 4), time_us(ctx, launch),
         check(got, quant_dequant(ref, R, C)), 1e-2);
}

const CommandRegistrar kBenchKernels(
    "bench-kernels",
    "Time the element-wise CUDA kernels (norm, SiLU·mul, combine, RoPE + KV write, FP8 "
    "quantize, MoE sort and groups) at Mixtral 8x7B sizes, checked against host references",
    [](CLI::App& sub) -> std::function<int()> {
      struct Args {
        std::vector<int> tokens = {1024, 8192};
        int iters = 50;
        std::string out, only;
      };
      auto a = std::make_shared<Args>();
      sub.add_option("--tokens", a->tokens, "Token counts (MoE rows are tokens x 2)")
          ->check(CLI::Range(1, 65536))
          ->capture_default_str();
      sub.add_option("--iters", a->iters, "Timed launches per kernel (median)")
          ->check(CLI::Range(1, 100000))
          ->capture_default_str();
      sub.add_option("--out", a->out, "Write the results to this JSON file");
      sub.add_option("--only", a->only,
                     "Only the kernel groups whose name contains this (norm, silu, "
                     "silu_grouped, combine, rope, quantize, routing)");
      return [a] {
        int device = 0;
        MIXSERVE_CUDA_CHECK(cudaGetDevice(&device));
        cudaDeviceProp prop{};
        MIXSERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        std::printf("%s, %d SMs; H %d, F %d, Hq %d, Hkv %d, D %d, top-%d, bf16\n", prop.name,
                    prop.multiProcessorCount, kH, kF, kHq, kHkv, kD, kK);
        std::printf("%-26s %6s %7s %12s %12s %11s\n", "kernel", "tokens", "rows", "bytes", "time",
                    "rate");
        Ctx ctx;
        ctx.iters = a->iters;
        MIXSERVE_CUDA_CHECK(cudaMemset(ctx.flush.get(), 0, kFlushBytes));
        const auto want = [&](const char* group) {
          return a->only.empty() || std::string(group).find(a->only) != std::string::npos;
        };
        for (const int T : a->tokens) {
          if (want("norm")) bench_norm(ctx, T);
          if (want("silu")) bench_silu(ctx, T);
          if (want("silu_grouped")) bench_silu_grouped(ctx, T);
          if (want("combine")) bench_combine(ctx, T);
          if (want("rope")) bench_rope(ctx, T);
          if (want("quantize")) bench_quantize(ctx, T);
          if (want("routing")) bench_routing(ctx, T);
        }
        if (!a->out.empty()) {
          std::ofstream f(a->out);
          MIXSERVE_CHECK(f.good(), "bench-kernels: cannot write --out ", a->out);
          f << json{{"device", prop.name},
                    {"sms", prop.multiProcessorCount},
                    {"iters", a->iters},
                    {"all_checks_ok", ctx.all_ok},
                    {"results", ctx.results}}
                   .dump(2)
            << "\n";
        }
        if (!ctx.all_ok) std::fprintf(stderr, "bench-kernels: a kernel failed its check\n");
        return ctx.all_ok ? 0 : 1;
      };
    });

}  // namespace
}  // namespace mixserve::cli

#endif  // MIXSERVE_HAVE_CUDA
