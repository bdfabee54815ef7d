// Batched FP8 GEMMs of the grouped MoE (moe_padded_fp8.h) through cuBLASLt: for b in
// [0, batch), y[b] [M, N] = sum_k x[b][m, k] w[b][n, k] with E4M3 operands, float32
// accumulation and NO scaling (raw sums: the kernels after the GEMM apply the per-token and
// per-channel scales, which a batch of different experts could not share one scale vector for).
// Same layout as CublasLtGemm: row-major x [M, K], w [N, K] (nn.Linear's), y [M, N].
//
// Two ways to find each entry's operands, both fixed at enqueue time and so capturable:
//   pointer arrays: device arrays of `batch` pointers, filled by a kernel from the routing (any
//     expert per entry: a batch-1 step reads only its K experts' weights);
//   strided: base pointers and element strides (entry b = expert b of all E).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "model/dtype.h"

namespace mixserve::cuda {

class CublasLtBatchedFp8 {
 public:
  enum class Mode { kPointerArray = 0, kStrided = 1 };

  // slots: workspaces of workspace_bytes each, one for every stream that may run one of these
  // GEMMs at the same time as another (the counted MoE's concurrent tiers).
  explicit CublasLtBatchedFp8(size_t workspace_bytes = size_t{32} << 20, int slots = 1);
  ~CublasLtBatchedFp8();
  CublasLtBatchedFp8(const CublasLtBatchedFp8&) = delete;
  CublasLtBatchedFp8& operator=(const CublasLtBatchedFp8&) = delete;

  // Whether cuBLASLt offers an algorithm for this batched shape on this device (the answer is
  // cached; no kernel runs, so it may be asked during graph capture). Strided shapes are
  // asked with 16-byte aligned operands and strides.
  bool supported(Mode mode, int M, int N, int K, int batch, DType out);

  // x, w, y: device arrays of `batch` device pointers (16-byte aligned each). out: kBF16,
  // kF16 or kF32. K % 16 == 0. Throws mixserve::Error naming the shape when unsupported.
  // tune: use the fastest of cuBLASLt's candidates for this shape class (gemm_m_class), timed
  // on the first such call made outside graph capture (MIXSERVE_GEMM_AUTOTUNE=0: never);
  // otherwise the heuristic's first choice, so that graphs and eager steps of decode sizes
  // compute the same bits.
  // slot: the workspace (0 <= slot < slots()); concurrent calls on different streams need
  // different slots.
  void matmul_pointers(const void* const* x, const void* const* w, void* const* y, int M, int N,
                       int K, int batch, DType out, cudaStream_t stream, bool tune = false,
                       int slot = 0);
  // Whether the pointer-array call above with these arguments would time candidates first
  // (autotuning: launches and a host sync on its stream, so it must not run beside other work
  // whose time it would count).
  bool will_time(int M, int N, int K, int batch, DType out, bool tune);
  int slots() const { return slots_; }
  int tuned_classes() const { return static_cast<int>(tuned_.size()); }  // shape classes timed
  // Entry b: x + b * x_stride, w + b * w_stride, y + b * y_stride (strides in elements,
  // multiples of 16 bytes; base pointers 16-byte aligned).
  void matmul_strided(const uint8_t* x, int64_t x_stride, const uint8_t* w, int64_t w_stride,
                      void* y, int64_t y_stride, int M, int N, int K, int batch, DType out,
                      cudaStream_t stream);

 private:
  struct Plan;
  // mode, M, N, K, batch, out, x / w / y strides (0 for pointer arrays)
  using Key = std::tuple<int, int, int, int, int, int, int64_t, int64_t, int64_t>;
  Plan* plan_for(const Key& key);  // null: no algorithm (cached too)
  void run(const Key& key, const void* x, const void* w, void* y, cudaStream_t stream,
           bool tune, int slot);
  bool tunes(const Key& key, bool tune) const;  // the size rule of tuned calls
  Key tune_class(const Key& key) const;

  static constexpr int kCandidates = 8;     // heuristic answers timed per shape class
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;  // slots_ x workspace_bytes_
  size_t workspace_bytes_ = 0;
  int slots_ = 1;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  struct Algo;
  std::map<Key, std::unique_ptr<Algo>> tuned_;  // by gemm_m_class(M) and a batch class
  bool autotune_ = true;  // MIXSERVE_GEMM_AUTOTUNE=0 turns it off
};

}  // namespace mixserve::cuda
