// `mixserve bench attention`: times the paged attention kernels alone with CUDA events on
// Mixtral's head shape (Hq 32, Hkv 8, D 128; --kv-heads changes the head counts): decode
// (split-K) and prefill (tensor cores), next to the generic kernel, and prints achieved TB/s
// (K+V bytes read / time) and TFLOP/s (causal: 4 * q * ctx * Hq * D / 2 per sequence). Each
// timed launch reads another copy of Q / K / V (copies together larger than L2), so no launch
// finds its inputs cached. Median of --iters launches. --kv fp8: an E4M3 cache (random codes,
// K scale 1/224, V scale 1/112). Each case first compares the fast path's output with the
// generic kernel's (relative L2 error; the command fails above the dtype's tolerance).
#ifdef MIXSERVE_HAVE_CUDA

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/batch_plan.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/kernels.h"
#include "cli/command.h"
#include "model/dtype.h"
#include "util/error.h"
#include "util/rel_l2.h"

namespace mixserve::cli {
namespace {

using nlohmann::json;

constexpr int kGroup = 4, kD = 128, kBlock = 16;    // Mixtral: Hq = 4 Hkv
constexpr size_t kRotateBytes = size_t(200) << 20;  // > 4x the H100's 50 MB L2
constexpr float kFp8KScale = 1.0f / 224, kFp8VScale = 1.0f / 112;

struct Case {
  std::string name;
  int seqs, q_len, context;  // every sequence: q_len new tokens ending at position context - 1
  int hkv = 8;               // KV heads (Hq = 4 Hkv); --kv-heads
};

// One copy of the inputs: q rows [T, (Hq + 2 Hkv) D], K / V pools, a shuffled block table.
struct Inputs {
  BatchPlan plan;
  std::vector<cuda::DeviceBuffer> q, k, v, tables;
  cuda::DeviceBuffer positions, seq_of_token, seq_offsets, workspace;
  int copies = 1;
  int hkv = 8;
};

Inputs make_inputs(const Case& c, DType dt, bool kv_fp8) {
  Inputs in;
  in.hkv = c.hkv;
  const int n_kv = c.hkv, n_q = kGroup * c.hkv;
  BatchPlan& p = in.plan;
  const int per_seq = (c.context + kBlock - 1) / kBlock;
  p.max_blocks_per_seq = per_seq;
  p.seq_offsets = {0};
  std::vector<int32_t> seq_of_token;
  for (int s = 0; s < c.seqs; ++s) {
    for (int pos = c.context - c.q_len; pos < c.context; ++pos) {
      p.token_ids.push_back(0);
      p.positions.push_back(pos);
      seq_of_token.push_back(s);
    }
    p.seq_offsets.push_back(p.num_tokens());
    p.context_lens.push_back(c.context);
  }
  const int T = p.num_tokens(), blocks = c.seqs * per_seq;
  const size_t q_elems = size_t(T) * (n_q + 2 * n_kv) * kD;
  const size_t kv_elems = size_t(blocks) * kBlock * n_kv * kD;
  const size_t kv_elem_bytes = kv_fp8 ? 1 : 2;
  const size_t set_bytes = q_elems * 2 + 2 * kv_elems * kv_elem_bytes;
  in.copies = static_cast<int>(std::clamp<size_t>(kRotateBytes / set_bytes + 1, 1, 64));
  std::mt19937 gen(1234);
  // E4M3 codes of uniform values in [-1, 1) / scale (one host set, uploaded to every copy).
  std::vector<uint8_t> codes;
  if (kv_fp8) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    codes.resize(kv_elems);
    for (uint8_t& b : codes) b = float_to_fp8e4m3(u(gen) / kFp8KScale);
  }
  for (int i = 0; i < in.copies; ++i) {
    in.q.emplace_back(q_elems * 2);
    in.k.emplace_back(kv_elems * kv_elem_bytes);
    in.v.emplace_back(kv_elems * kv_elem_bytes);
    MIXSERVE_CUDA_CHECK(
        cuda::fill_synthetic(in.q[i].get(), dt, q_elems, 3 * i + 1, 1.0, false, nullptr));
    if (kv_fp8) {
      MIXSERVE_CUDA_CHECK(
          cudaMemcpy(in.k[i].get(), codes.data(), kv_elems, cudaMemcpyHostToDevice));
      // V: the same codes shifted by one element (not a copy of K).
      MIXSERVE_CUDA_CHECK(
          cudaMemcpy(in.v[i].get(), codes.data() + 1, kv_elems - 1, cudaMemcpyHostToDevice));
      MIXSERVE_CUDA_CHECK(cudaMemcpy(static_cast<uint8_t*>(in.v[i].get()) + kv_elems - 1,
                                     codes.data(), 1, cudaMemcpyHostToDevice));
    } else {
      MIXSERVE_CUDA_CHECK(
          cuda::fill_synthetic(in.k[i].get(), dt, kv_elems, 3 * i + 2, 1.0, false, nullptr));
      MIXSERVE_CUDA_CHECK(
          cuda::fill_synthetic(in.v[i].get(), dt, kv_elems, 3 * i + 3, 1.0, false, nullptr));
    }
    std::vector<int32_t> pool(blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), gen);
    in.tables.emplace_back(pool.size() * 4);
    MIXSERVE_CUDA_CHECK(
        cudaMemcpy(in.tables[i].get(), pool.data(), pool.size() * 4, cudaMemcpyHostToDevice));
  }
  auto up = [](cuda::DeviceBuffer& b, const std::vector<int32_t>& v) {
    b.reset(v.size() * 4);
    MIXSERVE_CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  };
  up(in.positions, p.positions);
  up(in.seq_of_token, seq_of_token);
  up(in.seq_offsets, p.seq_offsets);
  in.workspace.reset(cuda::kAttentionWorkspaceBytes);
  return in;
}

cuda::AttentionArgs args_for(const Inputs& in, int copy, void* out, bool fast, bool kv_fp8) {
  const int n_kv = in.hkv, n_q = kGroup * in.hkv;
  cuda::AttentionArgs a;
  a.q = in.q[copy].get();
  a.q_stride = (n_q + 2 * n_kv) * kD;
  a.k_cache = in.k[copy].get();
  a.v_cache = in.v[copy].get();
  a.out = out;
  a.positions = in.positions.as<int32_t>();
  a.seq_of_token = in.seq_of_token.as<int32_t>();
  a.block_tables = in.tables[copy].as<int32_t>();
  a.max_blocks_per_seq = in.plan.max_blocks_per_seq;
  a.num_tokens = in.plan.num_tokens();
  a.num_heads = n_q;
  a.num_kv_heads = n_kv;
  a.head_dim = kD;
  a.block_size = kBlock;
  a.scale = 1.0f / std::sqrt(float(kD));
  if (kv_fp8) {
    a.kv_fp8 = true;
    a.scale *= kFp8KScale;
    a.v_scale = kFp8VScale;
  }
  if (fast) {
    a.seq_offsets = in.seq_offsets.as<int32_t>();
    a.workspace = in.workspace.get();
    a.workspace_bytes = cuda::kAttentionWorkspaceBytes;
    cuda::set_attention_plan_fields(a, in.plan);
  }
  return a;
}

// Median milliseconds of `iters` launches of launch(copy), each bracketed by events.
template <typename F>
double time_median_ms(int iters, int copies, F&& launch) {
  cudaEvent_t e0, e1;
  MIXSERVE_CUDA_CHECK(cudaEventCreate(&e0));
  MIXSERVE_CUDA_CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < std::min(copies, 3); ++i) MIXSERVE_CUDA_CHECK(launch(i));  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    MIXSERVE_CUDA_CHECK(cudaEventRecord(e0));
    MIXSERVE_CUDA_CHECK(launch(i % copies));
    MIXSERVE_CUDA_CHECK(cudaEventRecord(e1));
    MIXSERVE_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    MIXSERVE_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  MIXSERVE_CUDA_CHECK(cudaEventDestroy(e0));
  MIXSERVE_CUDA_CHECK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Relative L2 distance of two [n] half arrays on the device.
double rel_l2_device(const void* got, const void* ref, size_t n, DType dt) {
  std::vector<uint16_t> g(n), r(n);
  MIXSERVE_CUDA_CHECK(cudaMemcpy(g.data(), got, n * 2, cudaMemcpyDeviceToHost));
  MIXSERVE_CUDA_CHECK(cudaMemcpy(r.data(), ref, n * 2, cudaMemcpyDeviceToHost));
  auto f = [&](uint16_t v) { return dt == DType::kBF16 ? bf16_to_float(v) : fp16_to_float(v); };
  std::vector<float> gf(n), rf(n);
  std::transform(g.begin(), g.end(), gf.begin(), f);
  std::transform(r.begin(), r.end(), rf.begin(), f);
  return rel_l2(gf, rf);
}

json run_case(const Case& c, DType dt, bool kv_fp8, int iters, bool sweep, int sms, bool* ok) {
  const Inputs in = make_inputs(c, dt, kv_fp8);
  const int n_kv = c.hkv, n_q = kGroup * c.hkv;
  const size_t out_elems = size_t(in.plan.num_tokens()) * n_q * kD;
  cuda::DeviceBuffer out(out_elems * 2), out_ref(out_elems * 2);
  // K + V bytes each query token's sequence reads once; causal FLOPs of QK^T and PV.
  const double kv_bytes = double(c.seqs) * c.context * n_kv * kD * 2 * (kv_fp8 ? 1 : 2);
  double flops = 0;
  for (int i = 0; i < c.q_len; ++i) flops += 4.0 * (c.context - c.q_len + i + 1) * n_q * kD;
  flops *= c.seqs;
  json r = {{"case", c.name},       {"seqs", c.seqs}, {"q_len", c.q_len},    {"context", c.context},
            {"kv_bytes", kv_bytes}, {"flops", flops}, {"copies", in.copies}, {"Hq", n_q},
            {"Hkv", n_kv}};
  auto report = [&](const std::string& kernel, double ms, json extra = json::object()) {
    const double tbs = kv_bytes / (ms * 1e-3) / 1e12, tfs = flops / (ms * 1e-3) / 1e12;
    std::printf("%-22s %-26s %10.1f us %8.2f TB/s %8.1f TFLOP/s\n", c.name.c_str(), kernel.c_str(),
                ms * 1e3, tbs, tfs);
    json k = {{"kernel", kernel}, {"median_us", ms * 1e3}, {"tb_per_s", tbs}, {"tflop_per_s", tfs}};
    k.update(extra);
    r["kernels"].push_back(k);
  };
  auto fast_args = [&](int i) { return args_for(in, i, out.get(), true, kv_fp8); };
  const cuda::AttentionArgs probe = fast_args(0);
  const cuda::DecodeSplitPlan planned = cuda::plan_decode_splits(probe, sms);
  // Correctness first: the planned fast path against the generic kernel on copy 0.
  MIXSERVE_CUDA_CHECK(cudaMemset(out.get(), 0xff, out_elems * 2));  // NaN poison
  MIXSERVE_CUDA_CHECK(
      cuda::paged_attention_generic(args_for(in, 0, out_ref.get(), false, kv_fp8), dt, nullptr));
  auto check = [&](const std::string& kernel, const cuda::DecodeSplitPlan& plan) {
    MIXSERVE_CUDA_CHECK(cudaMemset(out.get(), 0xff, out_elems * 2));
    MIXSERVE_CUDA_CHECK(cuda::paged_attention_planned(probe, plan, dt, nullptr));
    MIXSERVE_CUDA_CHECK(cudaDeviceSynchronize());
    const double err = rel_l2_device(out.get(), out_ref.get(), out_elems, dt);
    const double tol = dt == DType::kBF16 ? 1e-2 : 2e-3;
    if (!(err < tol)) {
      std::printf("%-22s %-26s CHECK FAILED: rel L2 %.3g vs generic (tolerance %.0g)\n",
                  c.name.c_str(), kernel.c_str(), err, tol);
      *ok = false;
    }
    return err;
  };
  auto plan_json = [](const cuda::DecodeSplitPlan& p) {
    return json{{"splits", p.num_splits}, {"split_len", p.split_len}, {"tiled", p.tiled}};
  };
  auto time_plan = [&](const cuda::DecodeSplitPlan& plan) {
    return time_median_ms(iters, in.copies, [&](int i) {
      return cuda::paged_attention_planned(fast_args(i), plan, dt, nullptr);
    });
  };
  {
    const double err = check("fast", planned);
    json extra = plan_json(planned);
    extra["rel_l2_vs_generic"] = err;
    report(std::string("fast") + (planned.tiled ? " (tiled)" : ""), time_plan(planned), extra);
  }
  if (sweep && c.q_len < probe.prefill_min_q) {
    for (bool tiled : {false, true}) {
      for (int splits : {1, 2, 3, 4, 8, 16, 32, 64}) {
        const int round = tiled ? 16 : 64;
        const int len = ((c.context + splits - 1) / splits + round - 1) / round * round;
        const cuda::DecodeSplitPlan sp{(c.context + len - 1) / len, len, tiled};
        if (sp.num_splits != splits) continue;
        if (sp.num_splits == planned.num_splits && tiled == planned.tiled) continue;
        if (splits > 1 && cuda::attention_workspace_needed(probe, splits) > probe.workspace_bytes)
          continue;
        const std::string name =
            std::string(tiled ? "tiled" : "stream") + " splits=" + std::to_string(splits);
        const double err = check(name, sp);
        json extra = plan_json(sp);
        extra["rel_l2_vs_generic"] = err;
        report(name, time_plan(sp), extra);
      }
    }
  }
  // The generic kernel is slow on long prefills: fewer launches.
  const int generic_iters = c.q_len * c.seqs > 1024 ? 3 : iters;
  report("generic", time_median_ms(generic_iters, in.copies, [&](int i) {
           return cuda::paged_attention_generic(args_for(in, i, out.get(), false, kv_fp8), dt,
                                                nullptr);
         }));
  return r;
}

const CommandRegistrar kBenchAttention(
    "bench attention",
    "Time the paged attention kernels (decode split-K, tensor-core prefill, generic) on "
    "Mixtral's head shape",
    [](CLI::App& sub) -> std::function<int()> {
      struct Args {
        std::string dtype = "bf16", kv = "auto", json_path;
        std::string only;
        std::vector<std::string> decode;
        int iters = 50, kv_heads = 8;
        bool sweep = false;
      };
      auto a = std::make_shared<Args>();
      sub.add_option("--dtype", a->dtype, "bf16 or fp16")->capture_default_str();
      sub.add_option("--iters", a->iters, "Timed launches per kernel (median)")
          ->check(CLI::Range(1, 100000))
          ->capture_default_str();
      sub.add_option("--kv", a->kv, "KV cache: auto (the dtype) or fp8 (E4M3)")
          ->capture_default_str();
      sub.add_option("--cases", a->only,
                     "Only the cases whose name contains this text (e.g. 'decode')");
      sub.add_flag("--sweep", a->sweep,
                   "Decode: also time other split counts, stream and tiled kernels");
      sub.add_option("--json", a->json_path, "Write the results to this JSON file");
      sub.add_option("--kv-heads", a->kv_heads,
                     "KV heads (query heads: 4 times as many); 1 makes a block's keys of one head "
                     "contiguous, like a head-major cache")
          ->check(CLI::Range(1, 64))
          ->capture_default_str();
      sub.add_option("--decode", a->decode,
                     "Extra decode cases SEQSxCONTEXT (e.g. 1536x193), run before the fixed ones");
      return [a] {
        MIXSERVE_CHECK(a->dtype == "bf16" || a->dtype == "fp16",
                       "bench attention: --dtype must be bf16 or fp16, got '", a->dtype, "'");
        MIXSERVE_CHECK(a->kv == "auto" || a->kv == "fp8",
                       "bench attention: --kv must be auto or fp8, got '", a->kv, "'");
        const DType dt = a->dtype == "bf16" ? DType::kBF16 : DType::kF16;
        const bool kv_fp8 = a->kv == "fp8";
        int device = 0, sms = 0;
        MIXSERVE_CUDA_CHECK(cudaGetDevice(&device));
        MIXSERVE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        cudaDeviceProp prop{};
        MIXSERVE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        std::printf("%s, %d SMs; Hq %d, Hkv %d, D %d, block %d, %s, KV %s\n", prop.name, sms,
                    kGroup * a->kv_heads, a->kv_heads, kD, kBlock, a->dtype.c_str(),
                    kv_fp8 ? "E4M3" : a->dtype.c_str());
        std::vector<Case> cases;
        for (const std::string& d : a->decode) {
          int seqs = 0, ctx = 0;
          char x = 0;
          MIXSERVE_CHECK(std::sscanf(d.c_str(), "%d%c%d", &seqs, &x, &ctx) == 3 && x == 'x' &&
                             seqs > 0 && ctx > 0,
                         "bench attention: --decode wants SEQSxCONTEXT, got '", d, "'");
          cases.push_back({"decode " + d, seqs, 1, ctx});
        }
        const std::vector<Case> fixed = {
            {"decode 1024x193", 1024, 1, 193}, {"decode 64x193", 64, 1, 193},
            {"decode 64x4096", 64, 1, 4096},   {"decode 1x4096", 1, 1, 4096},
            {"decode 1x512", 1, 1, 512},       {"decode 1x193", 1, 1, 193},
            {"prefill 1x4096", 1, 4096, 4096}, {"prefill 8x512", 8, 512, 512},
        };
        cases.insert(cases.end(), fixed.begin(), fixed.end());
        for (Case& c : cases) c.hkv = a->kv_heads;
        json results = {{"device", prop.name},
                        {"sms", sms},
                        {"dtype", a->dtype},
                        {"kv", a->kv},
                        {"Hq", kGroup * a->kv_heads},
                        {"Hkv", a->kv_heads},
                        {"D", kD},
                        {"block_size", kBlock},
                        {"iters", a->iters}};
        // The prefill kernel at D = 128 (attention.cu): wgmma unless MIXSERVE_PREFILL_ATTN=mma.
        const char* pf = std::getenv("MIXSERVE_PREFILL_ATTN");
        results["prefill_kernel"] = pf != nullptr && std::string(pf) == "mma" ? "mma" : "wgmma";
        bool ok = true;
        for (const Case& c : cases) {
          if (!a->only.empty() && c.name.find(a->only) == std::string::npos) continue;
          results["cases"].push_back(run_case(c, dt, kv_fp8, a->iters, a->sweep, sms, &ok));
        }
        results["checks_passed"] = ok;
        if (!a->json_path.empty()) {
          std::ofstream f(a->json_path);
          MIXSERVE_CHECK(f.good(), "bench attention: cannot write --json ", a->json_path);
          f << results.dump(2) << "\n";
        }
        return ok ? 0 : 1;
      };
    });

}  // namespace
}  // namespace mixserve::cli

#endif  // MIXSERVE_HAVE_CUDA
