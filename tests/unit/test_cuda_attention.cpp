// Paged attention kernel against the CPU reference: GQA / MHA / MQA head layouts, decode,
// prefill and chunked prefill mixed in one step (T = 1, 3, 17, 257), contexts crossing blocks,
// shuffled block tables, sliding window.
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <cmath>

#include "backend/cpu/cpu_attention.h"
#include "backend/cuda/kernels.h"
#include "cuda_plan_builder.h"

namespace mixserve {
namespace {

using namespace cuda_test;

struct HeadShape {
  int Hq, Hkv, D;
};

void check_attention(const std::vector<SeqSpec>& seqs, const HeadShape hs, int window, DType dt) {
  const int block_size = 16, num_blocks = 64;
  const BatchPlan plan = build_plan(seqs, block_size, num_blocks, rng());
  const int T = plan.num_tokens();
  const size_t pool = size_t(num_blocks) * block_size * hs.Hkv * hs.D;
  // The q rows sit inside a wider qkv-like row, as in the backend.
  const int stride = (hs.Hq + 2 * hs.Hkv) * hs.D;
  const std::vector<float> qkv = rounded(random_vector(size_t(T) * stride), dt);
  const std::vector<float> k = rounded(random_vector(pool), dt);
  const std::vector<float> v = rounded(random_vector(pool), dt);
  std::vector<float> q(size_t(T) * hs.Hq * hs.D);
  for (int t = 0; t < T; ++t) {
    std::copy_n(qkv.begin() + size_t(t) * stride, hs.Hq * hs.D,
                q.begin() + size_t(t) * hs.Hq * hs.D);
  }
  const cpu::AttentionShape shape{hs.Hq, hs.Hkv, hs.D, block_size, window};
  std::vector<float> ref(q.size());
  cpu::paged_attention(plan, shape, q.data(), k.data(), v.data(), ref.data(), 1);

  std::vector<int32_t> seq_of_token(T);
  for (int s = 0; s < plan.num_seqs(); ++s) {
    for (int t = plan.seq_offsets[s]; t < plan.seq_offsets[s + 1]; ++t) seq_of_token[t] = s;
  }
  DeviceBuffer d_q = upload(to_half(qkv, dt)),
               d_k = upload(to_device_kv(to_half(k, dt), hs.Hkv, hs.D)),
               d_v = upload(to_device_kv(to_half(v, dt), hs.Hkv, hs.D)), d_pos = upload(plan.positions),
               d_seq = upload(seq_of_token), d_bt = upload(plan.block_tables);
  DeviceBuffer d_out = upload(std::vector<uint16_t>(q.size(), 0x7fc0));  // NaN poison
  cuda::AttentionArgs a;
  a.q = d_q.get();
  a.q_stride = stride;
  a.k_cache = d_k.get();
  a.v_cache = d_v.get();
  a.out = d_out.get();
  a.positions = d_pos.as<int32_t>();
  a.seq_of_token = d_seq.as<int32_t>();
  a.block_tables = d_bt.as<int32_t>();
  a.max_blocks_per_seq = plan.max_blocks_per_seq;
  a.num_tokens = T;
  a.num_heads = hs.Hq;
  a.num_kv_heads = hs.Hkv;
  a.head_dim = hs.D;
  a.block_size = block_size;
  a.sliding_window = window;
  a.scale = float(1.0 / std::sqrt(double(hs.D)));
  ASSERT_EQ(cuda::paged_attention(a, dt, nullptr), cudaSuccess);
  const std::vector<float> got = from_half(download<uint16_t>(d_out, q.size()), dt);
  EXPECT_LT(rel_l2(got, ref), op_tol(dt))
      << "T=" << T << " Hq=" << hs.Hq << " Hkv=" << hs.Hkv << " D=" << hs.D << " window=" << window;
}

// Steps of T = 1, 3, 17 and 257 tokens.
std::vector<std::vector<SeqSpec>> steps() {
  return {
      {{45, 1}},                               // one decode, 3 blocks
      {{1, 1}, {16, 1}, {33, 1}},              // decodes at block edges
      {{17, 17}},                              // a fresh prefill crossing a block
      {{300, 250}, {70, 1}, {5, 5}, {64, 1}},  // chunked prefill + decodes + prefill
  };
}

TEST(CudaAttention, MatchesCpuReference) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (const HeadShape hs : {HeadShape{4, 1, 32}, HeadShape{8, 4, 16}, HeadShape{32, 8, 128},
                             HeadShape{6, 6, 12}, HeadShape{4, 2, 256}}) {
    for (const auto& seqs : steps()) check_attention(seqs, hs, 0, DType::kBF16);
  }
  for (const auto& seqs : steps()) check_attention(seqs, {8, 2, 64}, 0, DType::kF16);
}

TEST(CudaAttention, SlidingWindowMatchesCpuReference) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (int window : {1, 20, 64}) {
    for (const auto& seqs : steps()) check_attention(seqs, {8, 2, 32}, window, DType::kBF16);
  }
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
