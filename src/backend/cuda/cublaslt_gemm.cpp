#include "backend/cuda/cublaslt_gemm.h"

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

#define MIXSERVE_CUBLAS_CHECK(call) ::mixserve::cuda::check_cublas((call), "cuBLASLt GEMM", #call)

// Plan keys mark unscaled FP8 GEMMs with this offset on the input type.
constexpr int kUnscaledFp8 = 1000;

cudaDataType_t cuda_type(DType t) { return cublas_data_type(t, "cuBLASLt GEMM"); }

// Largest power of two (<= 256) dividing every address, as cuBLASLt's alignment preference.
int alignment_of(const void* a, const void* b, const void* c) {
  const uintptr_t bits = reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) |
                         reinterpret_cast<uintptr_t>(c) | uintptr_t{256};
  return static_cast<int>(bits & (~bits + 1));
}

}  // namespace

struct CublasLtGemm::Algo {
  cublasLtMatmulAlgo_t algo{};
};

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // heuristic order; [0] is `algo` until tuned
  bool settled = false;  // algo is final (tuned, taken from the class, or nothing to tune)
  ~Plan() {
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

CublasLtGemm::CublasLtGemm(size_t workspace_bytes, int lanes)
    : workspace_bytes_(workspace_bytes), lanes_(lanes) {
  MIXSERVE_CHECK(lanes >= 1 && lanes <= kMaxLanes, "cuBLASLt GEMM: ", lanes, " lanes (1 to ",
                 kMaxLanes, ")");
  cublasLtHandle_t h = nullptr;
  MIXSERVE_CUBLAS_CHECK(cublasLtCreate(&h));
  handle_ = h;
  MIXSERVE_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_ * lanes_));
  if (const char* env = std::getenv("MIXSERVE_GEMM_AUTOTUNE"); env != nullptr) {
    autotune_ = std::string(env) != "0";
  }
}

void* CublasLtGemm::lane_workspace(int lane) const {
  MIXSERVE_CHECK(lane >= 0 && lane < lanes_, "cuBLASLt GEMM: lane ", lane, " of ", lanes_);
  return static_cast<char*>(workspace_) + workspace_bytes_ * lane;
}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

CublasLtGemm::Plan& CublasLtGemm::plan_for(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return *it->second;
  const auto [M, N, K, in_key, out_i, align] = key;
  const bool unscaled = in_key >= kUnscaledFp8;
  const int in_i = unscaled ? in_key - kUnscaledFp8 : in_key;
  const cudaDataType_t in = cuda_type(static_cast<DType>(in_i));
  const cudaDataType_t out = cuda_type(static_cast<DType>(out_i));
  auto plan = std::make_unique<Plan>();
  // Column-major view: Y^T [N, M] = W [N, K] (stored as col-major [K, N], transposed)
  //                                · X^T [K, M] (row-major X is col-major [K, M]).
  MIXSERVE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  MIXSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                       &trans_a, sizeof(trans_a)));
  MIXSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                       &trans_b, sizeof(trans_b)));
  if (in == CUDA_R_8F_E4M3 && !unscaled) {
    // A = W's rows get one scale each (a vector over op(A)'s N rows), B = X's tokens one each
    // (a vector over op(B)'s M columns): D[n, m] = sa[n] * sb[m] * sum_k A[n, k] B[k, m].
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    MIXSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)));
    MIXSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
        plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)));
    // Vector scale modes need non-null scale pointers when the heuristic runs (it answers
    // "invalid value" otherwise); the workspace stands in until matmul_fp8 sets the real ones.
    const void* stand_in = workspace_;
    for (auto attr : {CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER}) {
      MIXSERVE_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(plan->desc, attr, &stand_in, sizeof(stand_in)));
    }
  }
  MIXSERVE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, in, K, N, K));
  MIXSERVE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, in, K, M, K));
  MIXSERVE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, out, N, M, N));

  cublasLtMatmulPreference_t pref = nullptr;
  MIXSERVE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_bytes_;
  const uint32_t al = static_cast<uint32_t>(align);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  for (auto attr :
       {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al));
  }
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(
      static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a, plan->b, plan->c, plan->c, pref,
      autotune_ ? kCandidates : 1, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
    throw_error("cuBLASLt: no algorithm for the GEMM [", M, " x ", K, "] x [", N, " x ", K, "]^T (",
                dtype_name(static_cast<DType>(in_i)), " -> ", dtype_name(static_cast<DType>(out_i)),
                ", alignment ", align, " bytes): ", cublasLtGetStatusString(st));
  }
  plan->algo = results[0].algo;
  for (int i = 0; i < found; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS) plan->candidates.push_back(results[i].algo);
  }
  // A class already tuned gives its algorithm, when it suits this M.
  const Key cls{gemm_m_class(M), N, K, in_key, out_i, align};
  if (auto t = tuned_.find(cls); t != tuned_.end()) {
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(static_cast<cublasLtHandle_t>(handle_), plan->desc, plan->a,
                                plan->b, plan->c, plan->c, &t->second->algo,
                                &check) == CUBLAS_STATUS_SUCCESS &&
        check.workspaceSize <= workspace_bytes_) {
      plan->algo = t->second->algo;
    }
    plan->settled = true;
  }
  // Small GEMMs (the tiny test models) keep the heuristic's choice: timing noise would make
  // their algorithm, and so their last bits, differ from run to run for no gain.
  const double flops = 2.0 * M * N * K;
  const double weight_bytes = double(N) * K * dtype_size(static_cast<DType>(in_i));
  const bool worth_tuning = flops >= 1e9 || weight_bytes >= double(16 << 20);
  if (!autotune_ || !worth_tuning || plan->candidates.size() < 2) plan->settled = true;
  return *plans_.emplace(key, std::move(plan)).first->second;
}

void CublasLtGemm::run(Plan& p, const Key& key, const void* x, const void* w, void* y,
                       cudaStream_t stream, int lane) {
  const float alpha = 1.0f, beta = 0.0f;
  auto launch = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), p.desc, &alpha, w, p.a, x, p.b,
                          &beta, y, p.c, y, p.c, &algo, lane_workspace(lane), workspace_bytes_,
                          stream);
  };
  // Settled plans (every call after a shape's first) go straight to the launch.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (!p.settled) MIXSERVE_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (!p.settled && capture == cudaStreamCaptureStatusNone) {
    // Time every candidate on these operands (y is overwritten by the real call below).
    float best_ms = 0.0f, first_ms = 0.0f;
    const size_t best = fastest_candidate(
        p.candidates.size(), [&](size_t i) { return int(launch(p.candidates[i])); }, stream,
        &best_ms, &first_ms);
    p.algo = p.candidates[best];
    p.settled = true;
    const auto [M, N, K, in_key, out_i, align] = key;
    const int in_i = in_key >= kUnscaledFp8 ? in_key - kUnscaledFp8 : in_key;
    auto algo = std::make_unique<Algo>();
    algo->algo = p.algo;
    tuned_[Key{gemm_m_class(M), N, K, in_key, out_i, align}] = std::move(algo);
    if (best != 0) ++retuned_;
    log::debug("GEMM autotune M=", M, " (class ", gemm_m_class(M), ") N=", N, " K=", K, " ",
               dtype_name(static_cast<DType>(in_i)), in_key >= kUnscaledFp8 ? " (unscaled)" : "",
               "->", dtype_name(static_cast<DType>(out_i)), ": candidate ", best, " of ", p.candidates.size(), " ", best_ms,
               " ms, heuristic's first ", first_ms, " ms");
  }
  MIXSERVE_CUBLAS_CHECK(launch(p.algo));
}

void CublasLtGemm::matmul_fp8_unscaled(const uint8_t* x, const uint8_t* w, void* y, int M, int N,
                                       int K, DType out, cudaStream_t stream, int lane) {
  if (M <= 0 || N <= 0) return;
  MIXSERVE_CHECK(K % 16 == 0, "FP8 GEMM: K (", K, ") must be a multiple of 16 (cuBLASLt FP8)");
  const Key key{M,
                N,
                K,
                kUnscaledFp8 + static_cast<int>(DType::kF8E4M3),
                static_cast<int>(out),
                alignment_of(x, w, y)};
  run(plan_for(key), key, x, w, y, stream, lane);
}

void CublasLtGemm::matmul(const void* x, const void* w, void* y, int M, int N, int K, DType in,
                          DType out, cudaStream_t stream, int lane) {
  if (M <= 0 || N <= 0) return;
  const Key key{M, N, K, static_cast<int>(in), static_cast<int>(out), alignment_of(x, w, y)};
  run(plan_for(key), key, x, w, y, stream, lane);
}

void CublasLtGemm::matmul_fp8(const uint8_t* x, const float* x_scales, const uint8_t* w,
                              const float* w_scales, void* y, int M, int N, int K, DType out,
                              cudaStream_t stream, int lane) {
  if (M <= 0 || N <= 0) return;
  MIXSERVE_CHECK(K % 16 == 0, "FP8 GEMM: K (", K, ") must be a multiple of 16 (cuBLASLt FP8)");
  const Key key{
      M, N, K, static_cast<int>(DType::kF8E4M3), static_cast<int>(out), alignment_of(x, w, y)};
  Plan& p = plan_for(key);
  // The scale vectors change per call (per expert, per step): set on the cached descriptor.
  MIXSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                       &w_scales, sizeof(w_scales)));
  MIXSERVE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                       &x_scales, sizeof(x_scales)));
  run(p, key, x, w, y, stream, lane);
}

}  // namespace mixserve::cuda
