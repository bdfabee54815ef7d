// cuBLASLt for every GEMM of the CUDA backend: y[M, N] = x[M, K] · w[N, K]^T (nn.Linear's
// layout, row-major), half-precision or FP8 operands, float32 accumulation, output in the operand
// type or float32. Descriptors, layouts and the heuristic's algorithm are cached per
// (M, N, K, types, pointer alignment); one workspace per lane is allocated up front, so GEMMs
// of different lanes may run at the same time on different streams.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "model/dtype.h"

namespace mixserve::cuda {

class CublasLtGemm {
 public:
  static constexpr int kMaxLanes = 4;
  // workspace_bytes: scratch the heuristic may use per lane (32 MiB covers Hopper's kernels).
  explicit CublasLtGemm(size_t workspace_bytes = size_t{32} << 20, int lanes = 1);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // y[M, N] (row-major, ld N) = x[M, K] (ld K) · w[N, K]^T (ld K). `in` is kBF16 or kF16;
  // `out` is `in` or kF32. Throws mixserve::Error (naming the shape) when cuBLASLt fails.
  // lane in [0, lanes): the workspace to use; calls that may overlap use distinct lanes.
  void matmul(const void* x, const void* w, void* y, int M, int N, int K, DType in, DType out,
              cudaStream_t stream, int lane = 0);

  // FP8 E4M3 operands with per-token and per-channel scales (cuBLASLt's outer-vector mode):
  // y[m, n] = x_scales[m] * w_scales[n] * sum_k x[m, k] w[n, k], float32 accumulation.
  //   x: [M, K]; x_scales: [M] (16-byte aligned); w: [N, K]; w_scales: [N]; y: [M, N] in
  //   `out` (kBF16, kF16 or kF32). K % 16 == 0.
  void matmul_fp8(const uint8_t* x, const float* x_scales, const uint8_t* w,
                  const float* w_scales, void* y, int M, int N, int K, DType out,
                  cudaStream_t stream, int lane = 0);

  // FP8 E4M3 operands without scales: y[m, n] = sum_k x[m, k] w[n, k] (the caller applies the
  // quantization scales). cuBLASLt has many more kernels for this than for outer-vector scales.
  void matmul_fp8_unscaled(const uint8_t* x, const uint8_t* w, void* y, int M, int N, int K,
                           DType out, cudaStream_t stream, int lane = 0);

  size_t workspace_bytes() const { return workspace_bytes_; }
  int lanes() const { return lanes_; }

  // Autotuning (on by default; MIXSERVE_GEMM_AUTOTUNE=0 turns it off): the first GEMM of a
  // shape class — (M rounded up to a bucket, N, K, types, alignment) — outside graph capture
  // times up to kCandidates algorithms of cuBLASLt's heuristic on its real operands (3 runs
  // each, median) and keeps the fastest for the whole class; other M of the class reuse it when
  // cublasLtMatmulAlgoCheck accepts it. Heuristic order alone picks one 128 x 128 FP8 kernel
  // for every shape (docs/perf/NOTES.md). GEMMs under 1 GFLOP with under 16 MiB of weights
  // are not tuned (nothing to gain, and run-to-run determinism of small models is kept).
  static constexpr int kCandidates = 8;
  void set_autotune(bool on) { autotune_ = on; }
  // Shape classes tuned so far, and how many of them chose another algorithm than the first.
  int tuned_classes() const { return static_cast<int>(tuned_.size()); }
  int retuned_classes() const { return retuned_; }

 private:
  struct Plan;
  struct Algo;
  using Key = std::tuple<int, int, int, int, int, int>;  // M, N, K, in, out, alignment
  Plan& plan_for(const Key& key);
  // Runs y = x w^T with plan p (scales already set); tunes p's class first when due.
  void run(Plan& p, const Key& key, const void* x, const void* w, void* y, cudaStream_t stream,
           int lane);

  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;  // per lane
  int lanes_ = 1;
  void* lane_workspace(int lane) const;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  bool autotune_ = true;
  std::map<Key, std::unique_ptr<Algo>> tuned_;  // by shape class (M bucketed)
  int retuned_ = 0;
};

}  // namespace mixserve::cuda
