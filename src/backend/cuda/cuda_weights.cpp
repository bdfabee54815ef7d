#include "backend/cuda/cuda_weights.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "model/make_model.h"
#include "model/safetensors.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::cuda {
namespace {

constexpr size_t kAlign = 256;  // every tensor starts 256-byte aligned (cuBLASLt's best case)

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

double gib(size_t bytes) { return static_cast<double>(bytes) / double(1 << 30); }

// Converts a checkpoint tensor into `dst` (numel elements of dtype), on the host.
void convert(const TensorView& t, DType dtype, void* dst) {
  const int64_t n = t.numel();
  if (t.dtype == dtype) {
    std::memcpy(dst, t.data, t.nbytes);
    return;
  }
  std::vector<float> values(static_cast<size_t>(n));
  t.to_float(values.data());
  uint16_t* out = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    out[i] = dtype == DType::kBF16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
  }
}

}  // namespace

size_t CudaWeights::reserve(size_t elements) {
  const size_t offset = total_bytes_;
  total_bytes_ += (elements * dtype_size(dtype_) + kAlign - 1) / kAlign * kAlign;
  return offset;
}

CudaWeights::CudaWeights(const ModelConfig& c, DType dtype) : config_(c), dtype_(dtype) {
  MIXSERVE_CHECK(dtype == DType::kBF16 || dtype == DType::kF16,
                 "CUDA backend: --dtype must be bf16 or fp16, got ", dtype_name(dtype));
  namespace wn = weight_names;
  const int64_t V = c.vocab_size, H = c.hidden_size, F = c.intermediate_size;
  const int64_t q = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv = int64_t{c.num_key_value_heads} * c.head_dim;
  const int64_t E = c.moe ? c.num_local_experts : 1;
  embed_ = reserve(V * H);
  place({wn::embed(), {V, H}}, embed_);
  layers_.resize(c.num_hidden_layers);
  const size_t el = dtype_size(dtype);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    LayerOffsets& o = layers_[l];
    o.attn_norm = reserve(H);
    place({wn::attn_norm(l), {H}}, o.attn_norm);
    o.wqkv = reserve((q + 2 * kv) * H);
    place({wn::q_proj(l), {q, H}}, o.wqkv);
    place({wn::k_proj(l), {kv, H}}, o.wqkv + q * H * el);
    place({wn::v_proj(l), {kv, H}}, o.wqkv + (q + kv) * H * el);
    o.wo = reserve(H * q);
    place({wn::o_proj(l), {H, q}}, o.wo);
    o.ffn_norm = reserve(H);
    place({wn::ffn_norm(l), {H}}, o.ffn_norm);
    o.router = 0;
    if (c.moe) {
      o.router = reserve(E * H);
      place({wn::router(l), {E, H}}, o.router);
    }
    o.w13 = reserve(E * 2 * F * H);
    o.w2 = reserve(E * H * F);
    for (int64_t e = 0; e < E; ++e) {
      const int ei = static_cast<int>(e);
      place({wn::expert_gate(c, l, ei), {F, H}}, o.w13 + e * 2 * F * H * el);
      place({wn::expert_up(c, l, ei), {F, H}}, o.w13 + (e * 2 * F + F) * H * el);
      place({wn::expert_down(c, l, ei), {H, F}}, o.w2 + e * H * F * el);
    }
  }
  final_norm_ = reserve(H);
  place({wn::final_norm(), {H}}, final_norm_);
  if (c.tie_word_embeddings) {
    lm_head_ = embed_;
  } else {
    lm_head_ = reserve(V * H);
    place({wn::lm_head(), {V, H}}, lm_head_);
  }
}

CudaLayerWeights CudaWeights::layer(int l) const {
  const LayerOffsets& o = layers_.at(l);
  CudaLayerWeights w;
  w.attn_norm = at(o.attn_norm);
  w.wqkv = at(o.wqkv);
  w.wo = at(o.wo);
  w.ffn_norm = at(o.ffn_norm);
  w.router = config_.moe ? at(o.router) : nullptr;
  w.w13 = at(o.w13);
  w.w2 = at(o.w2);
  return w;
}

void CudaWeights::load(const Checkpoint& ckpt) {
  arena_.reset(total_bytes_);
  size_t staging_bytes = 0;
  for (const WeightPlacement& p : placements_) {
    staging_bytes = std::max(staging_bytes, size_t(numel(p.tensor.shape)) * dtype_size(dtype_));
  }
  PinnedBuffer staging(staging_bytes);
  size_t done = 0;
  int last_decile = -1;
  for (const WeightPlacement& p : placements_) {
    const TensorView& t = ckpt.get(p.tensor.name, p.tensor.shape);
    const size_t bytes = size_t(t.numel()) * dtype_size(dtype_);
    convert(t, dtype_, staging.get());
    MIXSERVE_CUDA_CHECK(
        cudaMemcpy(arena_.as<char>(p.offset), staging.get(), bytes, cudaMemcpyHostToDevice));
    done += bytes;
    const int decile = static_cast<int>(10 * done / std::max<size_t>(total_bytes_, 1));
    if (decile != last_decile) {
      last_decile = decile;
      log::info("loading weights to the GPU: ", 10 * decile, "% (", gib(done), " of ",
                gib(total_bytes_), " GiB, ", dtype_name(dtype_), ")");
    }
  }
}

void CudaWeights::make_synthetic(uint64_t seed, cudaStream_t stream) {
  arena_.reset(total_bytes_);
  for (const WeightPlacement& p : placements_) {
    const SyntheticTensorParams sp = synthetic_tensor_params(p.tensor, seed);
    MIXSERVE_CUDA_CHECK(fill_synthetic(arena_.as<char>(p.offset), dtype_, numel(p.tensor.shape),
                                       sp.key, sp.half_width, sp.norm, stream));
  }
  MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
  log::info("synthetic weights made on the GPU: ", gib(total_bytes_), " GiB (", dtype_name(dtype_),
            ")");
}

}  // namespace mixserve::cuda
