// Device sampling kernels (launchers declared in sampling.h). One block per row.
//
// The host Sampler sorts the candidates by (logit descending, id ascending) and truncates to a
// prefix (top-k, top-p, min-p), then draws by a linear scan of cumulative probabilities. A
// sorted prefix is determined by its last element, so every step here is "find the first
// element of the sorted order whose cumulative weight exceeds W" (find_crossing): a radix
// descent over the 32-bit order key (4 passes of 8-bit digits, histograms of the weight in
// shared memory) and, inside the final key (tied logits), a block scan in id order. Weights
// are counts (top-k) or probabilities in 2^-43 fixed point (top-p, draw), summed with integer
// atomics: the result does not depend on the order of the additions.
#pragma once

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "backend/cuda/sampling.h"
#include "util/counter_rng.h"

namespace mixserve::cuda {

constexpr int kSampleThreads = 1024;
constexpr double kMassScale = 0x1.0p43;  // V * 2^43 < 2^64 for V up to 2^20

// Order key: smaller key = larger logit. -0 and +0 map to one key (the host sees them equal).
__device__ inline uint32_t sort_key(float l) {
  const uint32_t b = __float_as_uint(__fadd_rn(l, 0.0f));
  const uint32_t ascending = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return ~ascending;
}

// The last element of a sorted prefix; every element at or before it is in the prefix.
struct Boundary {
  uint32_t key;
  int32_t id;
};
__device__ inline bool within(uint32_t k, int32_t id, Boundary b) {
  return k < b.key || (k == b.key && id <= b.id);
}
constexpr Boundary kWholeVocab{0xffffffffu, 0x7fffffff};

struct MinU64 {
  __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return a < b ? a : b; }
};

struct SampleSmem {
  using Scan = cub::BlockScan<unsigned long long, kSampleThreads>;
  using Reduce = cub::BlockReduce<unsigned long long, kSampleThreads>;
  union {
    typename Scan::TempStorage scan;
    typename Reduce::TempStorage reduce;
  } tmp;
  unsigned long long hist[256];
  unsigned long long rem;
  unsigned long long value;
  uint32_t prefix;
  Boundary found;
};

__device__ inline uint64_t block_sum(uint64_t v, SampleSmem& s) {
  const uint64_t total = SampleSmem::Reduce(s.tmp.reduce).Sum((unsigned long long)v);
  if (threadIdx.x == 0) s.value = total;
  __syncthreads();
  const uint64_t out = s.value;
  __syncthreads();
  return out;
}

// First element e of the sorted order with (sum of weight over elements up to e) > W.
// weight(i, logit, key) >= 0; needs W < the total weight.
template <typename WeightFn>
__device__ Boundary find_crossing(const float* row, int V, uint64_t W, WeightFn weight,
                                  SampleSmem& s) {
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int d = threadIdx.x; d < 256; d += blockDim.x) s.hist[d] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float l = row[i];
      const uint32_t k = sort_key(l);
      if ((k & mask) != prefix) continue;
      const uint64_t w = weight(i, l, k);
      if (w != 0) atomicAdd(&s.hist[(k >> shift) & 255u], (unsigned long long)w);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t cum = 0;
      int d = 0;
      for (; d < 255; ++d) {
        if (cum + s.hist[d] > W) break;
        cum += s.hist[d];
      }
      s.rem = W - cum;
      s.prefix = prefix | (uint32_t(d) << shift);
    }
    __syncthreads();
    W = s.rem;
    prefix = s.prefix;
    mask |= 255u << shift;
  }
  // Tied logits (key == prefix) in id order: each thread owns a contiguous id range.
  const int chunk = (V + blockDim.x - 1) / blockDim.x;
  const int lo = min(V, int(threadIdx.x) * chunk), hi = min(V, lo + chunk);
  uint64_t local = 0;
  for (int i = lo; i < hi; ++i) {
    const float l = row[i];
    const uint32_t k = sort_key(l);
    if (k == prefix) local += weight(i, l, k);
  }
  unsigned long long before = 0;
  SampleSmem::Scan(s.tmp.scan).ExclusiveSum((unsigned long long)local, before);
  if (before <= W && W < before + local) {
    uint64_t cum = before;
    for (int i = lo; i < hi; ++i) {
      const float l = row[i];
      const uint32_t k = sort_key(l);
      if (k != prefix) continue;
      cum += weight(i, l, k);
      if (cum > W) {
        s.found = Boundary{prefix, i};
        break;
      }
    }
  }
  __syncthreads();
  const Boundary b = s.found;
  __syncthreads();
  return b;
}

__global__ void apply_penalties_kernel(float* logits, int V, const SamplingRow* rows,
                                       const int32_t* offsets, const PenaltyEntry* entries) {
  const int r = blockIdx.x;
  const SamplingRow p = rows[r];
  float* row = logits + int64_t{r} * V;
  for (int j = offsets[r] + threadIdx.x; j < offsets[r + 1]; j += blockDim.x) {
    const PenaltyEntry e = entries[j];
    if (e.id < 0 || e.id >= V) continue;
    float l = row[e.id];
    // Explicit rounding intrinsics: no fused multiply-add, the host's float arithmetic.
    if ((e.flags & PenaltyEntry::kInHistory) && p.repetition_penalty != 1.0f) {
      l = l > 0.0f ? __fdiv_rn(l, p.repetition_penalty) : __fmul_rn(l, p.repetition_penalty);
    }
    if (e.output_count > 0 && (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)) {
      l = __fsub_rn(
          l, __fadd_rn(__fmul_rn(p.frequency_penalty, float(e.output_count)), p.presence_penalty));
    }
    if (e.flags & PenaltyEntry::kSuppressed) l = -__int_as_float(0x7f800000);
    row[e.id] = l;
  }
}

__global__ void __launch_bounds__(kSampleThreads)
    sample_rows_kernel(const float* logits, int V, const SamplingRow* rows, int32_t* ids) {
  __shared__ SampleSmem s;
  const int r = blockIdx.x;
  const SamplingRow p = rows[r];
  const float* row = logits + int64_t{r} * V;

  // The first element of the sorted order: the argmax, ties to the lowest id.
  unsigned long long best = ~0ull;
  auto consider = [&](float l, int i) {
    const unsigned long long v = (uint64_t(sort_key(l)) << 32) | uint32_t(i);
    best = v < best ? v : best;
  };
  if (V % 4 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0) {
    // 16-byte loads: 4x the bytes in flight of scalar ones (the greedy rows of a batch-1,536
    // decode step, 197 MB, took 181 us at 1.1 TB/s with scalar loads; NOTES.md session 12).
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int j = threadIdx.x; j < V / 4; j += blockDim.x) {
      const float4 q = row4[j];
      consider(q.x, 4 * j);
      consider(q.y, 4 * j + 1);
      consider(q.z, 4 * j + 2);
      consider(q.w, 4 * j + 3);
    }
  } else {
    for (int i = threadIdx.x; i < V; i += blockDim.x) consider(row[i], i);
  }
  best = SampleSmem::Reduce(s.tmp.reduce).Reduce(best, MinU64());
  if (threadIdx.x == 0) s.value = best;
  __syncthreads();
  const int32_t first = int32_t(s.value & 0xffffffffu);
  __syncthreads();
  if (p.temperature == 0.0f) {
    if (threadIdx.x == 0) ids[r] = first;
    return;
  }
  const float mx = row[first];
  const double temp = p.temperature;
  // sample_token: prob = exp(double(logit - mx) / temperature), the max has prob 1.
  auto prob = [&](float l) { return exp(double(__fsub_rn(l, mx)) / temp); };
  auto mass = [&](float l) { return uint64_t(prob(l) * kMassScale + 0.5); };  // nearest

  Boundary bk = kWholeVocab;
  if (p.top_k > 0 && p.top_k < V) {
    bk = find_crossing(
        row, V, uint64_t(p.top_k - 1), [](int, float, uint32_t) { return uint64_t{1}; }, s);
  }
  Boundary bp = kWholeVocab;
  if (p.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p of the top-k mass
    uint64_t local = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      const float l = row[i];
      if (within(sort_key(l), i, bk)) local += mass(l);
    }
    const uint64_t total = block_sum(local, s);
    uint64_t need = uint64_t(ceil(double(p.top_p) * double(total)));
    need = need == 0 ? 1 : need;  // cum >= need  <=>  cum > need - 1
    bp = find_crossing(
        row, V, need - 1,
        [&](int i, float l, uint32_t k) { return within(k, i, bk) ? mass(l) : uint64_t{0}; }, s);
  }
  const double min_p = p.min_p;
  auto kept_mass = [&](int i, float l, uint32_t k) -> uint64_t {
    if (!within(k, i, bk) || !within(k, i, bp)) return 0;
    const double q = prob(l);
    if (min_p > 0.0 && !(q >= min_p)) return 0;
    return uint64_t(q * kMassScale + 0.5);
  };
  uint64_t local = 0;
  for (int i = threadIdx.x; i < V; i += blockDim.x) {
    const float l = row[i];
    local += kept_mass(i, l, sort_key(l));
  }
  const uint64_t total = block_sum(local, s);
  const double u = counter_uniform_draw(p.seed, p.sample_index, p.draw_index);
  uint64_t w = uint64_t(u * double(total));
  w = w >= total ? total - 1 : w;
  const Boundary chosen = find_crossing(row, V, w, kept_mass, s);
  if (threadIdx.x == 0) ids[r] = chosen.id;
}

}  // namespace mixserve::cuda
