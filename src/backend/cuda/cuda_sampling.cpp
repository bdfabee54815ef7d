// CudaBackend::forward_and_sample: the step's logits stay on the device; penalties and the
// sampler run there (sampling.h) and only the chosen ids come back (plus the raw logits rows
// of the rows that asked for log-probabilities, which the engine computes on the host with
// the Sampler's own compute_logprobs). One host sync per step.
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/sampling.h"
#include "util/error.h"

namespace mixserve::cuda {
namespace {

size_t align_up8(size_t n) { return (n + 7) / 8 * 8; }

}  // namespace

void CudaBackend::forward_and_sample(const BatchPlan& plan, const SamplingBatch& batch,
                                     SampledTokens* out) {
  submit_and_sample(plan, batch);
  collect_sampled(out);
}

void CudaBackend::submit_and_sample(const BatchPlan& plan, const SamplingBatch& batch) {
  MIXSERVE_CHECK(submitted_rows_ < 0,
                 "CUDA backend: submit_and_sample while the previous step is not collected");
  const int V = config_.vocab_size;
  const size_t R = plan.logits_rows.size();
  MIXSERVE_CHECK(batch.rows.size() == R && batch.entry_offsets.size() == R + 1 &&
                     size_t(batch.entry_offsets.back()) == batch.entries.size(),
                 "CUDA backend: the SamplingBatch has ", batch.rows.size(), " rows and ",
                 batch.entry_offsets.size(), " entry offsets for a plan of ", R,
                 " logits rows (needs R rows, R + 1 offsets ending at the entry count)");
  run_model(plan);
  submitted_raw_rows_ = 0;
  if (R == 0 || plan.num_tokens() == 0) {
    submitted_rows_ = 0;
    return;
  }
  // rows [R] | offsets [R+1] | entries, one upload.
  const size_t rows_b = R * sizeof(SamplingRow);
  const size_t offs_at = align_up8(rows_b), offs_b = (R + 1) * sizeof(int32_t);
  const size_t ents_at = align_up8(offs_at + offs_b);
  const size_t bytes = ents_at + batch.entries.size() * sizeof(PenaltyEntry);
  if (sample_host_.bytes() < bytes) {
    sample_host_.reset(bytes * 2);
    sample_dev_.reset(bytes * 2);
  }
  std::memcpy(sample_host_.get(), batch.rows.data(), rows_b);
  std::memcpy(sample_host_.as<char>(offs_at), batch.entry_offsets.data(), offs_b);
  if (!batch.entries.empty()) {
    std::memcpy(sample_host_.as<char>(ents_at), batch.entries.data(),
                batch.entries.size() * sizeof(PenaltyEntry));
  }
  MIXSERVE_CUDA_CHECK(cudaMemcpyAsync(sample_dev_.get(), sample_host_.get(), bytes,
                                      cudaMemcpyHostToDevice, stream_));
  const auto* rows = sample_dev_.as<SamplingRow>();
  // Raw rows for log-probabilities, before the penalties change them.
  size_t raw_rows = 0;
  for (const SamplingRow& r : batch.rows) raw_rows += r.logprobs >= 0 ? 1 : 0;
  if (raw_rows > 0) {
    if (raw_host_.bytes() < raw_rows * V * sizeof(float)) raw_host_.reset(raw_rows * V * 4);
    for (size_t r = 0, k = 0; r < R; ++r) {
      if (batch.rows[r].logprobs < 0) continue;
      MIXSERVE_CUDA_CHECK(cudaMemcpyAsync(raw_host_.as<float>(k++ * V * 4), ws_.logits + r * V,
                                          size_t(V) * 4, cudaMemcpyDeviceToHost, stream_));
    }
  }
  if (!batch.entries.empty()) {
    MIXSERVE_CUDA_CHECK(apply_penalties(ws_.logits, int(R), V, rows,
                                        sample_dev_.as<int32_t>(offs_at),
                                        sample_dev_.as<PenaltyEntry>(ents_at), stream_));
  }
  if (ids_host_.bytes() < R * 4) ids_host_.reset(R * 4 * 2);
  // The chosen ids go to the workspace's sorted_token (T * K >= R ints, unused after the FFN).
  MIXSERVE_CUDA_CHECK(sample_rows(ws_.logits, int(R), V, rows, ws_.sorted_token, stream_));
  MIXSERVE_CUDA_CHECK(
      cudaMemcpyAsync(ids_host_.get(), ws_.sorted_token, R * 4, cudaMemcpyDeviceToHost, stream_));
  submitted_rows_ = int64_t(R);
  submitted_raw_rows_ = raw_rows;
}

void CudaBackend::collect_sampled(SampledTokens* out) {
  MIXSERVE_CHECK(submitted_rows_ >= 0, "CUDA backend: collect_sampled without a submitted step");
  const size_t R = size_t(submitted_rows_), raw_rows = submitted_raw_rows_;
  submitted_rows_ = -1;
  MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  out->ids.assign(R, 0);
  if (R > 0) std::memcpy(out->ids.data(), ids_host_.get(), R * 4);
  out->raw_logits.clear();
  if (raw_rows > 0) {
    const size_t V = size_t(config_.vocab_size);
    out->raw_logits.assign(raw_host_.as<float>(), raw_host_.as<float>() + raw_rows * V);
  }
}

}  // namespace mixserve::cuda
