// The fast attention kernels (split-K decode, tensor-core prefill; D = 64 / 128) against the
// CPU reference and against the generic kernel: T = 1, 3, 17, 257, 620 and chunks crossing key
// tiles, prefill and decodes mixed in one step, queries at the prefill threshold, GQA ratios
// 1 / 3 / 4 / 8 / 32, block sizes 16 and 7, shuffled block tables, sliding windows, forced
// split counts (partials merged by the combine kernel), fp16 and bf16, and an E4M3 (FP8) KV
// cache with K / V scales (the reference attends over the dequantized cache).
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <cmath>
#include <cstdlib>

#include "backend/cpu/cpu_attention.h"
#include "backend/cuda/kernels.h"
#include "cuda_plan_builder.h"

namespace mixserve {
namespace {

using namespace cuda_test;

struct HeadShape {
  int Hq, Hkv, D;
};

struct Case {
  std::vector<SeqSpec> seqs;
  HeadShape hs;
  int window = 0;
  int block_size = 16;
  DType dt = DType::kBF16;
  int forced_splits = 0;     // > 0: split-K kernel alone, with this many splits
  bool kv_fp8 = false;       // E4M3 cache, K scale 1/224 and V scale 1/112
  bool tiled = false;        // with forced_splits: the tiled kernel (else the stream kernel)
  float q_magnitude = 1.0f;  // standard deviation of the (normal) queries
};

constexpr float kFp8KScale = 1.0f / 224, kFp8VScale = 1.0f / 112;

// The E4M3 codes of v / scale; v becomes their dequantized values (what the kernels see).
std::vector<uint8_t> to_fp8(std::vector<float>& v, float scale) {
  std::vector<uint8_t> q(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    q[i] = float_to_fp8e4m3(v[i] / scale);
    v[i] = fp8e4m3_to_float(q[i]) * scale;
  }
  return q;
}

std::string describe(const Case& c, int T) {
  std::string s = "T=" + std::to_string(T) + " Hq=" + std::to_string(c.hs.Hq) +
                  " Hkv=" + std::to_string(c.hs.Hkv) + " D=" + std::to_string(c.hs.D) +
                  " window=" + std::to_string(c.window) + " block=" + std::to_string(c.block_size) +
                  " splits=" + std::to_string(c.forced_splits) + (c.tiled ? " tiled" : "") +
                  (c.dt == DType::kF16 ? " fp16" : " bf16") + (c.kv_fp8 ? " kv-fp8" : "") +
                  " seqs:";
  for (const SeqSpec& q : c.seqs) {
    s += " (" + std::to_string(q.context) + "," + std::to_string(q.new_tokens) + ")";
  }
  return s;
}

void check(const Case& c) {
  const HeadShape hs = c.hs;
  int num_blocks = 0;
  for (const SeqSpec& q : c.seqs) num_blocks += (q.context + c.block_size - 1) / c.block_size;
  num_blocks += 3;  // unused blocks in the pool too
  const BatchPlan plan = build_plan(c.seqs, c.block_size, num_blocks, rng());
  const int T = plan.num_tokens();
  const size_t pool = size_t(num_blocks) * c.block_size * hs.Hkv * hs.D;
  const int stride = (hs.Hq + 2 * hs.Hkv) * hs.D;
  const std::vector<float> qkv = rounded(random_vector(size_t(T) * stride, c.q_magnitude), c.dt);
  std::vector<float> k = rounded(random_vector(pool), c.dt);
  std::vector<float> v = rounded(random_vector(pool), c.dt);
  std::vector<uint8_t> k8, v8;
  if (c.kv_fp8) {
    k8 = to_fp8(k, kFp8KScale);
    v8 = to_fp8(v, kFp8VScale);
  }
  std::vector<float> q(size_t(T) * hs.Hq * hs.D);
  for (int t = 0; t < T; ++t) {
    std::copy_n(qkv.begin() + size_t(t) * stride, hs.Hq * hs.D,
                q.begin() + size_t(t) * hs.Hq * hs.D);
  }
  const cpu::AttentionShape shape{hs.Hq, hs.Hkv, hs.D, c.block_size, c.window};
  std::vector<float> ref(q.size());
  cpu::paged_attention(plan, shape, q.data(), k.data(), v.data(), ref.data(), 4);

  std::vector<int32_t> seq_of_token(T);
  for (int s = 0; s < plan.num_seqs(); ++s) {
    for (int t = plan.seq_offsets[s]; t < plan.seq_offsets[s + 1]; ++t) seq_of_token[t] = s;
  }
  DeviceBuffer d_q = upload(to_half(qkv, c.dt)),
               d_k = c.kv_fp8 ? upload(to_device_kv(k8, hs.Hkv, hs.D))
                              : upload(to_device_kv(to_half(k, c.dt), hs.Hkv, hs.D)),
               d_v = c.kv_fp8 ? upload(to_device_kv(v8, hs.Hkv, hs.D))
                              : upload(to_device_kv(to_half(v, c.dt), hs.Hkv, hs.D)),
               d_pos = upload(plan.positions), d_seq = upload(seq_of_token),
               d_bt = upload(plan.block_tables), d_off = upload(plan.seq_offsets);
  DeviceBuffer d_out = upload(std::vector<uint16_t>(q.size(), 0x7fc0));  // NaN poison
  DeviceBuffer d_gen = upload(std::vector<uint16_t>(q.size(), 0x7fc0));
  DeviceBuffer d_ws(cuda::kAttentionWorkspaceBytes);
  cuda::AttentionArgs a;
  a.q = d_q.get();
  a.q_stride = stride;
  a.k_cache = d_k.get();
  a.v_cache = d_v.get();
  a.positions = d_pos.as<int32_t>();
  a.seq_of_token = d_seq.as<int32_t>();
  a.block_tables = d_bt.as<int32_t>();
  a.max_blocks_per_seq = plan.max_blocks_per_seq;
  a.num_tokens = T;
  a.num_heads = hs.Hq;
  a.num_kv_heads = hs.Hkv;
  a.head_dim = hs.D;
  a.block_size = c.block_size;
  a.sliding_window = c.window;
  a.scale = float(1.0 / std::sqrt(double(hs.D)));
  a.workspace = d_ws.get();
  a.workspace_bytes = cuda::kAttentionWorkspaceBytes;
  if (c.kv_fp8) {
    a.kv_fp8 = true;
    a.scale *= kFp8KScale;
    a.v_scale = kFp8VScale;
  }

  a.out = d_gen.get();
  ASSERT_EQ(cuda::paged_attention_generic(a, c.dt, nullptr), cudaSuccess);
  a.out = d_out.get();
  if (c.forced_splits > 0) {
    cuda::set_attention_plan_fields(a, plan);  // seq_offsets null: every token split-K
    int len = a.max_context;
    if (c.window > 0) len = std::min(len, c.window);
    const int split_len = ((len + c.forced_splits - 1) / c.forced_splits + 63) / 64 * 64;
    const cuda::DecodeSplitPlan sp{(len + split_len - 1) / split_len, split_len, c.tiled};
    ASSERT_EQ(cuda::paged_attention_planned(a, sp, c.dt, nullptr), cudaSuccess);
  } else {
    a.seq_offsets = d_off.as<int32_t>();
    cuda::set_attention_plan_fields(a, plan);
    ASSERT_EQ(cuda::paged_attention(a, c.dt, nullptr), cudaSuccess);
  }
  const std::vector<float> got = from_half(download<uint16_t>(d_out, q.size()), c.dt);
  const std::vector<float> gen = from_half(download<uint16_t>(d_gen, q.size()), c.dt);
  EXPECT_LT(rel_l2(got, ref), op_tol(c.dt)) << describe(c, T);
  EXPECT_LT(rel_l2(got, gen), op_tol(c.dt)) << "vs generic kernel: " << describe(c, T);
}

// Steps of T = 1, 3, 17, 257 tokens, the prefill threshold (16 queries) from both sides, and a
// chunk of 130 queries over 700 keys (several query and key tiles, a partial last tile).
std::vector<std::vector<SeqSpec>> steps() {
  return {
      {{45, 1}},    {{1, 1}, {16, 1}, {33, 1}},
      {{17, 17}},   {{300, 250}, {70, 1}, {5, 5}, {64, 1}},
      {{257, 257}}, {{40, 16}, {40, 15}, {700, 130}, {3, 3}},
  };
}

TEST(CudaAttentionFast, MatchesReferenceAndGenericKernel) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (const HeadShape hs : {HeadShape{8, 8, 64}, HeadShape{32, 8, 128}, HeadShape{16, 2, 128},
                             HeadShape{32, 1, 64}, HeadShape{12, 4, 64}}) {
    for (const auto& seqs : steps()) check({seqs, hs});
  }
  for (const auto& seqs : steps()) check({seqs, {32, 8, 128}, 0, 16, DType::kF16});
  for (const auto& seqs : steps()) check({seqs, {8, 2, 64}, 0, 7, DType::kF16});
  // Five 128-query tiles after 500 cached keys: warps skip and mask on diagonal tiles.
  check({{{1100, 600}, {50, 20}}, {32, 8, 128}});
  check({{{1100, 600}, {50, 20}}, {8, 2, 64}, 300, 7, DType::kF16});
}

// The wgmma prefill kernel (D = 128, cache of the activation type, > 64 queries): last query
// tiles of 104, 65, 1 and 2 rows (the second warpgroup partial, with one row, idle), chunks
// after cached keys that are not multiples of the 128-key tile, windows that start inside a
// key tile and cross warpgroup rows, GQA 1 / 8 / 32, block sizes 16 and 7, bf16 and fp16.
std::vector<std::vector<SeqSpec>> wgmma_steps() {
  return {
      {{2200, 1000}, {77, 65}},
      {{129, 129}, {200, 66}, {40, 1}},
      {{385, 130}, {65, 65}, {1, 1}, {300, 200}},
  };
}

TEST(CudaAttentionFast, WgmmaPrefillEdges) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (const HeadShape hs : {HeadShape{32, 8, 128}, HeadShape{8, 8, 128}, HeadShape{32, 1, 128}}) {
    for (const auto& seqs : wgmma_steps()) {
      check({seqs, hs});
      check({seqs, hs, 0, 7, DType::kF16});
    }
  }
  for (int window : {1, 63, 129, 300}) {
    for (const auto& seqs : wgmma_steps()) {
      check({seqs, {16, 2, 128}, window, 7, DType::kBF16});
      check({seqs, {32, 8, 128}, window, 16, DType::kF16});
    }
  }
}

// The mma.sync prefill kernel keeps D = 128 steps when MIXSERVE_PREFILL_ATTN=mma: it must stay
// right too (it is the wgmma kernel's A/B baseline).
TEST(CudaAttentionFast, MmaPrefillKernelWhenSelected) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  ASSERT_EQ(setenv("MIXSERVE_PREFILL_ATTN", "mma", 1), 0);
  for (const auto& seqs : wgmma_steps()) {
    check({seqs, {32, 8, 128}});
    check({seqs, {16, 2, 128}, 129, 7, DType::kF16});
  }
  check({{{1100, 600}, {50, 20}}, {32, 8, 128}});
  unsetenv("MIXSERVE_PREFILL_ATTN");
}

TEST(CudaAttentionFast, SlidingWindow) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (int window : {1, 20, 64, 100}) {
    for (const auto& seqs : steps()) check({seqs, {32, 8, 128}, window});
    check({{{1000, 1}, {333, 1}, {900, 80}}, {8, 2, 64}, window, 16, DType::kBF16, 4});
  }
}

TEST(CudaAttentionFast, ForcedSplitsMergeExactly) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const std::vector<SeqSpec> seqs = {{2000, 1}, {1500, 1}, {64, 1}, {65, 1}, {1, 1}, {600, 40}};
  for (int splits : {1, 2, 7, 32}) {
    check({seqs, {32, 8, 128}, 0, 16, DType::kBF16, splits});
    check({seqs, {8, 1, 64}, 0, 16, DType::kF16, splits});
  }
}

// The tiled kernel with forced splits (the planner picks it alone, unsplit, for the short
// contexts of the tests above): empty splits of short sequences, partial last tiles, every GQA
// ratio's head groups (G = 1, 3, 4, 8, 32), block size 7 (tiles crossing blocks), windows.
TEST(CudaAttentionFast, TiledKernelForcedSplits) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  const std::vector<SeqSpec> seqs = {{2000, 1}, {1500, 1}, {64, 1}, {65, 1}, {1, 1}, {193, 1}};
  for (int splits : {1, 2, 7, 32}) {
    check({seqs, {32, 8, 128}, 0, 16, DType::kBF16, splits, false, true});
    check({seqs, {32, 8, 128}, 0, 16, DType::kBF16, splits, true, true});
    check({seqs, {8, 1, 64}, 0, 16, DType::kF16, splits, false, true});
    check({seqs, {8, 1, 64}, 0, 7, DType::kF16, splits, true, true});
  }
  for (const HeadShape hs :
       {HeadShape{8, 8, 64}, HeadShape{12, 4, 64}, HeadShape{32, 1, 128}, HeadShape{16, 2, 128}}) {
    check({seqs, hs, 0, 7, DType::kBF16, 3, false, true});
    check({seqs, hs, 0, 16, DType::kF16, 3, true, true});
  }
  check({seqs, {32, 8, 128}, 100, 16, DType::kBF16, 2, true, true});
  check({seqs, {32, 8, 128}, 17, 7, DType::kF16, 1, false, true});
}

// Queries far from 1 in magnitude through the tiled kernel's E4M3 path: a BF16 query is scaled
// by a power of two into FP16 range (elements up to 2^20 would overflow FP16 unscaled).
TEST(CudaAttentionFast, TiledFp8LargeQueries) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  Case c{{{193, 1}, {40, 1}, {17, 1}}, {32, 8, 128}, 0, 16, DType::kBF16, 1, true, true};
  c.q_magnitude = 1 << 20;
  check(c);
  c.q_magnitude = 1.0f / (1 << 20);
  check(c);
}

TEST(CudaAttentionFast, Fp8KvCache) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (const HeadShape hs : {HeadShape{32, 8, 128}, HeadShape{8, 2, 64}}) {
    for (const auto& seqs : steps()) {
      check({seqs, hs, 0, 16, DType::kBF16, 0, true});
      check({seqs, hs, 0, 7, DType::kF16, 0, true});
    }
    check({{{1000, 1}, {333, 1}, {900, 80}}, hs, 100, 16, DType::kBF16, 0, true});
  }
  const std::vector<SeqSpec> seqs = {{2000, 1}, {1500, 1}, {64, 1}, {65, 1}, {1, 1}, {600, 40}};
  for (int splits : {1, 7}) check({seqs, {32, 8, 128}, 0, 16, DType::kBF16, splits, true});
}

TEST(CudaAttentionFast, SplitPlanUsesTheMachine) {
  cuda::AttentionArgs a;
  a.num_tokens = 1;
  a.num_heads = 32;
  a.num_kv_heads = 8;
  a.head_dim = 128;
  a.max_context = 4096;
  // The planner never touches the workspace: it checks that there is one and reads its size.
  alignas(16) static char workspace_stand_in[16];
  a.workspace = workspace_stand_in;
  a.workspace_bytes = cuda::kAttentionWorkspaceBytes;
  const cuda::DecodeSplitPlan one = cuda::plan_decode_splits(a, 132);
  EXPECT_EQ(one.num_splits, 64);  // 8 blocks of 64 keys each would idle the card otherwise
  EXPECT_GE(one.num_splits * one.split_len, 4096);
  a.num_tokens = 64;
  const cuda::DecodeSplitPlan many = cuda::plan_decode_splits(a, 132);
  EXPECT_GT(many.num_splits, 1);
  EXPECT_LE(many.num_splits, 4);
  EXPECT_GE(many.num_splits * many.split_len, 4096);
  a.workspace_bytes = 0;  // no room for partials: no split
  EXPECT_EQ(cuda::plan_decode_splits(a, 132).num_splits, 1);
  a.workspace_bytes = cuda::kAttentionWorkspaceBytes;
  a.sliding_window = 100;  // only 100 keys visible: at most 2 splits of 64
  EXPECT_LE(cuda::plan_decode_splits(a, 132).num_splits, 2);
  // Short contexts with a warp for every SM: the tiled kernel, unsplit (no combine pass).
  a.sliding_window = 0;
  a.max_context = 193;
  for (int tokens : {64, 1024}) {
    a.num_tokens = tokens;
    const cuda::DecodeSplitPlan p = cuda::plan_decode_splits(a, 132);
    EXPECT_TRUE(p.tiled);
    EXPECT_EQ(p.num_splits, 1);
  }
  a.num_tokens = 1;  // one token over a short context: the stream kernel
  EXPECT_FALSE(cuda::plan_decode_splits(a, 132).tiled);
  a.max_context = 4096;  // over a long one: the tiled kernel, 64 splits of 64 keys
  const cuda::DecodeSplitPlan p1 = cuda::plan_decode_splits(a, 132);
  EXPECT_TRUE(p1.tiled);
  EXPECT_EQ(p1.num_splits, 64);
  EXPECT_EQ(p1.split_len, 64);
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
