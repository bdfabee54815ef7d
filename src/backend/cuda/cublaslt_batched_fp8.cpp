#include "backend/cuda/cublaslt_batched_fp8.h"

#include <cublasLt.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cuda/cublas_util.h"
#include "backend/cuda/cuda_check.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::cuda {
namespace {

void check(cublasStatus_t st, const char* what) {
  check_cublas(st, "cuBLASLt batched FP8 GEMM", what);
}

cudaDataType_t out_type(DType t) { return cublas_data_type(t, "cuBLASLt batched FP8 GEMM"); }

}  // namespace

struct CublasLtBatchedFp8::Algo {
  cublasLtMatmulAlgo_t algo{};
};

struct CublasLtBatchedFp8::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // heuristic order; algo = [0]
  cublasLtMatmulAlgo_t tuned{};  // for tuned calls, once `settled`
  bool settled = false;
  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

CublasLtBatchedFp8::CublasLtBatchedFp8(size_t workspace_bytes, int slots)
    : workspace_bytes_(workspace_bytes), slots_(std::max(1, slots)) {
  cublasLtHandle_t h = nullptr;
  check(cublasLtCreate(&h), "cublasLtCreate");
  handle_ = h;
  MIXSERVE_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_ * slots_));
  if (const char* env = std::getenv("MIXSERVE_GEMM_AUTOTUNE"); env != nullptr) {
    autotune_ = std::string(env) != "0";
  }
}

CublasLtBatchedFp8::~CublasLtBatchedFp8() {
  plans_.clear();
  tuned_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

CublasLtBatchedFp8::Plan* CublasLtBatchedFp8::plan_for(const Key& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  const auto [mode, M, N, K, batch, out_i, sx, sw, sy] = key;
  const cudaDataType_t in = CUDA_R_8F_E4M3, out = out_type(static_cast<DType>(out_i));
  auto plan = std::make_unique<Plan>();
  // Column-major view, as CublasLtGemm: Y^T [N, M] = W (col-major [K, N], transposed) · X^T.
  check(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                       sizeof(trans_a)),
        "TRANSA");
  check(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                       sizeof(trans_b)),
        "TRANSB");
  check(cublasLtMatrixLayoutCreate(&plan->a, in, K, N, K), "layout A");
  check(cublasLtMatrixLayoutCreate(&plan->b, in, K, M, K), "layout B");
  check(cublasLtMatrixLayoutCreate(&plan->c, out, N, M, N), "layout C");
  const int32_t count = batch;
  const uint32_t bmode = mode == int(Mode::kPointerArray) ? CUBLASLT_BATCH_MODE_POINTER_ARRAY
                                                          : CUBLASLT_BATCH_MODE_STRIDED;
  const std::pair<cublasLtMatrixLayout_t, int64_t> layouts[] = {
      {plan->a, sw}, {plan->b, sx}, {plan->c, sy}};
  for (const auto& [layout, stride] : layouts) {
    check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                           sizeof(count)),
          "BATCH_COUNT");
    check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_MODE, &bmode,
                                           sizeof(bmode)),
          "BATCH_MODE");
    if (mode == int(Mode::kStrided)) {
      check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                             &stride, sizeof(stride)),
            "STRIDED_BATCH_OFFSET");
    }
  }
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "preference");
  const uint64_t ws = workspace_bytes_;
  const uint32_t align = 16;  // what the callers guarantee of every operand
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align));
  }
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a, plan->b, plan->c, plan->c,
      pref, kCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    plan.reset();
  } else {
    plan->algo = plan->tuned = results[0].algo;
    for (int i = 0; i < found; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS) plan->candidates.push_back(results[i].algo);
    }
    plan->settled = !autotune_ || plan->candidates.size() < 2;
  }
  return plans_.emplace(key, std::move(plan)).first->second.get();
}

bool CublasLtBatchedFp8::supported(Mode mode, int M, int N, int K, int batch, DType out) {
  if (M <= 0 || N <= 0 || K <= 0 || K % 16 != 0 || batch <= 0) return false;
  const int64_t sx = mode == Mode::kStrided ? int64_t{M} * K : 0;
  const int64_t sw = mode == Mode::kStrided ? int64_t{N} * K : 0;
  const int64_t sy = mode == Mode::kStrided ? int64_t{M} * N : 0;
  return plan_for({int(mode), M, N, K, batch, int(out), sx, sw, sy}) != nullptr;
}

bool CublasLtBatchedFp8::tunes(const Key& key, bool tune) const {
  // Small GEMMs (the tiny test models) keep the heuristic's choice: timing noise would make
  // their algorithm, and so their last bits, differ from run to run for no gain.
  const auto [mode, M, N, K, batch, out_i, sx, sw, sy] = key;
  return tune && 2.0 * M * N * K * batch >= 1e9;
}

CublasLtBatchedFp8::Key CublasLtBatchedFp8::tune_class(const Key& key) const {
  // Classes by M and by batch size (1, 2-3, 4-8, else exact): the tiers of a counted MoE
  // step (moe_padded_fp8.h) give batches of every size from 1 to E, and tuning each one
  // again would cost more than it finds.
  const auto [mode, M, N, K, batch, out_i, sx, sw, sy] = key;
  const int batch_class = batch <= 1 ? 1 : batch <= 3 ? 2 : batch <= 8 ? 8 : batch;
  return Key{mode, gemm_m_class(M), N, K, batch_class, out_i, sx, sw, sy};
}

bool CublasLtBatchedFp8::will_time(int M, int N, int K, int batch, DType out, bool tune) {
  if (M <= 0 || N <= 0 || batch <= 0) return false;
  const Key key{int(Mode::kPointerArray), M, N, K, batch, int(out), 0, 0, 0};
  const Plan* p = plan_for(key);
  return p != nullptr && tunes(key, tune) && !p->settled && tuned_.count(tune_class(key)) == 0;
}

void CublasLtBatchedFp8::run(const Key& key, const void* x, const void* w, void* y,
                             cudaStream_t stream, bool tune, int slot) {
  MIXSERVE_CHECK(slot >= 0 && slot < slots_, "cuBLASLt batched FP8 GEMM: workspace slot ", slot,
                 " of ", slots_);
  Plan* p = plan_for(key);
  const auto [mode, M, N, K, batch, out_i, sx, sw, sy] = key;
  if (p == nullptr) {
    throw_error("cuBLASLt: no algorithm for the ",
                mode == int(Mode::kPointerArray) ? "pointer-array" : "strided",
                " batched FP8 GEMM ",
                batch, " x [", M, " x ", K, "] x [", N, " x ", K, "]^T -> ",
                dtype_name(static_cast<DType>(out_i)),
                " (run with --moe-padded-max-rows 0 to use the per-expert GEMMs)");
  }
  const float alpha = 1.0f, beta = 0.0f;
  void* workspace = static_cast<char*>(workspace_) + size_t(slot) * workspace_bytes_;
  auto launch = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), p->desc, &alpha, w, p->a, x,
                          p->b, &beta, y, p->c, y, p->c, &algo, workspace, workspace_bytes_,
                          stream);
  };
  tune = tunes(key, tune);
  if (tune && !p->settled) {
    const Key cls = tune_class(key);
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    MIXSERVE_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
    if (auto t = tuned_.find(cls); t != tuned_.end()) {
      // A class already tuned gives its algorithm, when it suits this M.
      cublasLtMatmulHeuristicResult_t fits{};
      if (cublasLtMatmulAlgoCheck(static_cast<cublasLtHandle_t>(handle_), p->desc, p->a, p->b,
                                  p->c, p->c, &t->second->algo, &fits) == CUBLAS_STATUS_SUCCESS &&
          fits.workspaceSize <= workspace_bytes_) {
        p->tuned = t->second->algo;
      }
      p->settled = true;
    } else if (capture == cudaStreamCaptureStatusNone) {
      // Time the candidates on these operands (y is overwritten by the real call below).
      float best_ms = 0.0f, first_ms = 0.0f;
      const size_t best = fastest_candidate(
          p->candidates.size(), [&](size_t i) { return int(launch(p->candidates[i])); }, stream,
          &best_ms, &first_ms);
      p->tuned = p->candidates[best];
      p->settled = true;
      auto tuned = std::make_unique<Algo>();
      tuned->algo = p->tuned;
      tuned_[cls] = std::move(tuned);
      log::debug("batched FP8 GEMM autotune ", batch, " x M=", M, " (class ", gemm_m_class(M),
                 ") N=", N, " K=", K, ": candidate ", best, " of ", p->candidates.size(), " ",
                 best_ms, " ms, heuristic's first ", first_ms, " ms");
    }
  }
  check(launch(tune ? p->tuned : p->algo), "cublasLtMatmul");
}

void CublasLtBatchedFp8::matmul_pointers(const void* const* x, const void* const* w,
                                         void* const* y, int M, int N, int K, int batch,
                                         DType out, cudaStream_t stream, bool tune, int slot) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  MIXSERVE_CHECK(K % 16 == 0, "FP8 GEMM: K (", K, ") must be a multiple of 16 (cuBLASLt FP8)");
  run({int(Mode::kPointerArray), M, N, K, batch, int(out), 0, 0, 0}, x, w, const_cast<void**>(y),
      stream, tune, slot);
}

void CublasLtBatchedFp8::matmul_strided(const uint8_t* x, int64_t x_stride, const uint8_t* w,
                                        int64_t w_stride, void* y, int64_t y_stride, int M, int N,
                                        int K, int batch, DType out, cudaStream_t stream) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  MIXSERVE_CHECK(K % 16 == 0, "FP8 GEMM: K (", K, ") must be a multiple of 16 (cuBLASLt FP8)");
  run({int(Mode::kStrided), M, N, K, batch, int(out), x_stride, w_stride, y_stride}, x, w, y,
      stream, false, 0);
}

}  // namespace mixserve::cuda
