// Helpers of the CUDA tests: skipping without a GPU, device buffers from host vectors, half
// conversions, error norms, and the bf16 / fp16 tolerances (written down once, here).
//
// Tolerances are relative L2 errors ||gpu - ref|| / ||ref|| against the float32 CPU reference
// run on the same (already rounded) inputs:
//   one op with a half-precision output: rounding of each output (2^-9 bf16, 2^-12 fp16
//   relative) gives ~0.3% / 0.04% L2; the bounds leave ~3x room.
//   a whole model (2 layers, every GEMM input rounded): errors compound over ~10 roundings
//   (observed on an H100: rows within 0.8% bf16, 0.09% fp16). A token whose K-th and
//   (K+1)-th router logits nearly tie may pick another expert in bf16 than in float32, which
//   moves its logits, and those of later tokens of its sequence (through the KV cache), by
//   tens of percent (seen: rows at 22% and 33%). The CPU reference's router gaps
//   (cuda_router_gaps.h) mark those sequences: their rows are held to kModelRowMax only,
//   every other row to the per-row model tolerance.
#pragma once

#include <gtest/gtest.h>

#ifdef MIXSERVE_HAVE_CUDA

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/batch_plan.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/kv_layout.h"
#include "backend/device.h"
#include "model/make_model.h"
#include "temp_dir.h"
#include "model/dtype.h"
#include "util/rel_l2.h"

namespace mixserve::cuda_test {

constexpr double kBf16OpTol = 1e-2;
constexpr double kFp16OpTol = 2e-3;
constexpr double kBf16ModelTol = 2e-2;  // logits of a 2-layer model, relative L2 per row
constexpr double kFp16ModelTol = 3e-3;
constexpr double kModelRowMax = 1.0;  // rows after a router near-tie (a flipped expert)
// Router logit gap (K-th minus (K+1)-th largest) under which bf16 may flip the choice: the
// router logits (std ~3 in these models) carry ~0.4% relative error, about 0.01; 5x that.
constexpr float kRouterTieGap = 0.05f;
// Greedy decoding may differ where the CPU's top two logits are closer than bf16 moves them:
// logits (std ~7 here) carry ~0.4% relative error, a few hundredths; 0.1 covers both sides.
constexpr float kGreedyTieLogitGap = 0.1f;

inline double op_tol(DType t) { return t == DType::kBF16 ? kBf16OpTol : kFp16OpTol; }

#define MIXSERVE_SKIP_WITHOUT_GPU()                                                   \
  do {                                                                                \
    if (::mixserve::cuda_device_count() == 0) {                                       \
      GTEST_SKIP() << "no CUDA device on this machine: CUDA tests run only on a GPU"; \
    }                                                                                 \
  } while (0)

using cuda::DeviceBuffer;

template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  DeviceBuffer b(std::max<size_t>(1, v.size() * sizeof(T)));
  if (!v.empty()) {
    MIXSERVE_CUDA_CHECK(
        cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  return b;
}

template <typename T>
std::vector<T> download(const DeviceBuffer& b, size_t n) {
  MIXSERVE_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> v(n);
  if (n) MIXSERVE_CUDA_CHECK(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

inline uint16_t to_half_bits(float f, DType t) {
  return t == DType::kBF16 ? float_to_bf16(f) : float_to_fp16(f);
}
inline float from_half_bits(uint16_t h, DType t) {
  return t == DType::kBF16 ? bf16_to_float(h) : fp16_to_float(h);
}
inline std::vector<uint16_t> to_half(const std::vector<float>& v, DType t) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_half_bits(v[i], t);
  return out;
}
inline std::vector<float> from_half(const std::vector<uint16_t>& v, DType t) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_half_bits(v[i], t);
  return out;
}
// A slot-major KV pool [N, Hkv, D] (the CPU backend's layout) in the CUDA pool's layout
// (kv_layout.h: head-major tiles of 16 slots, padded to whole tiles), and back.
template <typename T>
std::vector<T> to_device_kv(const std::vector<T>& slot_major, int Hkv, int D) {
  const int64_t n = int64_t(slot_major.size()) / (int64_t(Hkv) * D);
  std::vector<T> out(size_t(cuda::kv_pool_slots(n)) * Hkv * D, T{});
  for (int64_t s = 0; s < n; ++s)
    for (int g = 0; g < Hkv; ++g)
      std::copy_n(slot_major.begin() + (s * Hkv + g) * D, D,
                  out.begin() + cuda::kv_row(s, g, Hkv) * D);
  return out;
}
template <typename T>
std::vector<T> from_device_kv(const std::vector<T>& pool, int64_t n, int Hkv, int D) {
  std::vector<T> out(size_t(n) * Hkv * D);
  for (int64_t s = 0; s < n; ++s)
    for (int g = 0; g < Hkv; ++g)
      std::copy_n(pool.begin() + cuda::kv_row(s, g, Hkv) * D, D,
                  out.begin() + (s * Hkv + g) * D);
  return out;
}

// Values exactly representable in t (what the device holds), as float.
inline std::vector<float> rounded(const std::vector<float>& v, DType t) {
  return from_half(to_half(v, t), t);
}

// Fresh random data every run (the seed is printed so a failure can be replayed: set
// MIXSERVE_TEST_SEED to it and run the same gtest filter).
inline std::mt19937& rng() {
  static std::mt19937 gen = [] {
    const char* env = std::getenv("MIXSERVE_TEST_SEED");
    const unsigned seed = env != nullptr ? static_cast<unsigned>(std::strtoul(env, nullptr, 10))
                                         : std::random_device{}();
    std::printf("[cuda tests] random seed %u\n", seed);
    return std::mt19937(seed);
  }();
  return gen;
}
inline std::vector<float> random_vector(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng());
  return v;
}

// T distinct cache slots out of [0, N), in random order (RoPE + KV-write tests).
inline std::vector<int64_t> random_slots(int T, int N) {
  std::vector<int64_t> slots(N);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng());
  slots.resize(T);
  return slots;
}

// A checkpoint of `preset` (make-model, BF16) in dir/preset.
inline std::filesystem::path write_model(const testing::TempDir& dir, const std::string& preset) {
  MakeModelOptions mo;
  mo.preset = preset;
  mo.out = dir / preset;
  mo.dtype = DType::kBF16;
  make_model(mo);
  return mo.out;
}

// n token ids drawn from [3, V) (no <unk>, <s>, </s>).
inline std::vector<int32_t> random_tokens(int n, int V) {
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = 3 + int(rng()() % (V - 3));
  return ids;
}

// Greedy decode of one sequence: the prompt in one step, then one token a step; `blocks` is its
// block table (block_size tokens a block), forward(plan) returns the logits of the plan's one
// row. all_logits (optional) collects every step's logits.
inline std::vector<int32_t> greedy_decode(
    const std::function<std::vector<float>(const BatchPlan&)>& forward,
    const std::vector<int32_t>& prompt, int steps, const std::vector<int32_t>& blocks,
    int block_size, std::vector<std::vector<float>>* all_logits) {
  std::vector<int32_t> seq = prompt, out;
  int computed = 0;
  for (int step = 0; step < steps; ++step) {
    BatchPlan p;
    p.max_blocks_per_seq = int(blocks.size());
    p.block_tables = blocks;
    p.seq_offsets = {0};
    for (int pos = computed; pos < int(seq.size()); ++pos) {
      p.token_ids.push_back(seq[pos]);
      p.positions.push_back(pos);
      p.slot_mapping.push_back(int64_t{blocks[pos / block_size]} * block_size + pos % block_size);
    }
    p.seq_offsets.push_back(p.num_tokens());
    p.context_lens = {int(seq.size())};
    p.logits_rows = {p.num_tokens() - 1};
    const std::vector<float> logits = forward(p);
    computed = int(seq.size());
    const int best = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (all_logits) all_logits->push_back(logits);
    out.push_back(best);
    seq.push_back(best);
  }
  return out;
}

}  // namespace mixserve::cuda_test

#endif  // MIXSERVE_HAVE_CUDA
