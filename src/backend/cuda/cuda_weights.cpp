#include "backend/cuda/cuda_weights.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/fp8_kernels.h"
#include "backend/cuda/kernels.h"
#include "model/fp8_quant.h"
#include "model/loader.h"
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

// Converts a checkpoint tensor into `dst` (numel elements of dtype), on the host. F8_E4M3
// tensors are dequantized with their scales.
void convert(const Checkpoint& ckpt, const TensorView& t, DType dtype, void* dst) {
  const int64_t n = t.numel();
  if (t.dtype == dtype) {
    std::memcpy(dst, t.data, t.nbytes);
    return;
  }
  const std::vector<float> values = tensor_to_float(ckpt, t);
  uint16_t* out = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    out[i] = dtype == DType::kBF16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
  }
}

}  // namespace

size_t CudaWeights::reserve(size_t elements, size_t element_bytes) {
  const size_t offset = total_bytes_;
  total_bytes_ += (elements * element_bytes + kAlign - 1) / kAlign * kAlign;
  return offset;
}

CudaWeights::CudaWeights(const ModelConfig& c, DType dtype, bool fp8)
    : config_(c), dtype_(dtype), fp8_(fp8) {
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
  // Projection weights: el bytes per element; with FP8 also a float scale per row (placed at
  // `scales + row * 4`).
  const size_t el = fp8 ? 1 : dtype_size(dtype);
  auto place_proj = [&](const ExpectedTensor& t, size_t offset, size_t scales, int64_t row) {
    if (fp8) {
      place_fp8(t, offset, scales + size_t(row) * 4);
    } else {
      place(t, offset);
    }
  };
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    LayerOffsets& o = layers_[l];
    o.attn_norm = reserve(H);
    place({wn::attn_norm(l), {H}}, o.attn_norm);
    o.wqkv = reserve((q + 2 * kv) * H, el);
    if (fp8) o.wqkv_s = reserve(q + 2 * kv, 4);
    place_proj({wn::q_proj(l), {q, H}}, o.wqkv, o.wqkv_s, 0);
    place_proj({wn::k_proj(l), {kv, H}}, o.wqkv + q * H * el, o.wqkv_s, q);
    place_proj({wn::v_proj(l), {kv, H}}, o.wqkv + (q + kv) * H * el, o.wqkv_s, q + kv);
    o.wo = reserve(H * q, el);
    if (fp8) o.wo_s = reserve(H, 4);
    place_proj({wn::o_proj(l), {H, q}}, o.wo, o.wo_s, 0);
    o.ffn_norm = reserve(H);
    place({wn::ffn_norm(l), {H}}, o.ffn_norm);
    o.router = 0;
    if (c.moe) {
      o.router = reserve(E * H);
      place({wn::router(l), {E, H}}, o.router);
    }
    o.w13 = reserve(E * 2 * F * H, el);
    o.w2 = reserve(E * H * F, el);
    if (fp8) {
      o.w13_s = reserve(E * 2 * F, 4);
      o.w2_s = reserve(E * H, 4);
    }
    for (int64_t e = 0; e < E; ++e) {
      const int ei = static_cast<int>(e);
      place_proj({wn::expert_gate(c, l, ei), {F, H}}, o.w13 + e * 2 * F * H * el, o.w13_s,
                 e * 2 * F);
      place_proj({wn::expert_up(c, l, ei), {F, H}}, o.w13 + (e * 2 * F + F) * H * el, o.w13_s,
                 e * 2 * F + F);
      place_proj({wn::expert_down(c, l, ei), {H, F}}, o.w2 + e * H * F * el, o.w2_s, e * H);
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
  if (fp8_) {
    w.wqkv_scale = static_cast<const float*>(at(o.wqkv_s));
    w.wo_scale = static_cast<const float*>(at(o.wo_s));
    w.w13_scale = static_cast<const float*>(at(o.w13_s));
    w.w2_scale = static_cast<const float*>(at(o.w2_s));
  }
  return w;
}

void CudaWeights::quantize_into(const WeightPlacement& p, const void* src, cudaStream_t stream) {
  const int64_t rows = p.tensor.shape.at(0), cols = p.tensor.shape.at(1);
  MIXSERVE_CHECK(cols <= 0x7fffffff, "FP8: tensor ", p.tensor.name, " has too many columns");
  MIXSERVE_CUDA_CHECK(quantize_rows_fp8(src, dtype_, rows, static_cast<int>(cols),
                                        arena_.as<uint8_t>(p.offset),
                                        arena_.as<float>(p.scale_offset), stream));
}

void CudaWeights::load_fp8_tensor(const Checkpoint& ckpt, const WeightPlacement& p, void* staging,
                                  void* scratch) {
  const TensorView& t = ckpt.get(p.tensor.name, p.tensor.shape);
  const int64_t rows = p.tensor.shape.at(0);
  if (t.dtype == DType::kF8E4M3) {  // pre-quantized: bytes and scales as they are
    const std::vector<float> scales = fp8_row_scales(ckpt, t);
    MIXSERVE_CUDA_CHECK(
        cudaMemcpy(arena_.as<char>(p.offset), t.data, t.nbytes, cudaMemcpyHostToDevice));
    MIXSERVE_CUDA_CHECK(cudaMemcpy(arena_.as<char>(p.scale_offset), scales.data(), size_t(rows) * 4,
                                   cudaMemcpyHostToDevice));
    return;
  }
  convert(ckpt, t, dtype_, staging);
  MIXSERVE_CUDA_CHECK(
      cudaMemcpy(scratch, staging, size_t(t.numel()) * dtype_size(dtype_), cudaMemcpyHostToDevice));
  quantize_into(p, scratch, nullptr);
  MIXSERVE_CUDA_CHECK(cudaDeviceSynchronize());
}

void CudaWeights::load(const Checkpoint& ckpt) {
  arena_.reset(total_bytes_);
  size_t staging_bytes = 0, scratch_bytes = 0;
  for (const WeightPlacement& p : placements_) {
    const size_t b = size_t(numel(p.tensor.shape)) * dtype_size(dtype_);
    staging_bytes = std::max(staging_bytes, b);
    if (p.fp8) scratch_bytes = std::max(scratch_bytes, b);
  }
  PinnedBuffer staging(staging_bytes);
  DeviceBuffer scratch(scratch_bytes);  // a half-precision tensor before quantization
  size_t done = 0;
  int last_decile = -1;
  for (const WeightPlacement& p : placements_) {
    const size_t bytes = size_t(numel(p.tensor.shape)) * (p.fp8 ? 1 : dtype_size(dtype_));
    if (p.fp8) {
      load_fp8_tensor(ckpt, p, staging.get(), scratch.get());
    } else {
      const TensorView& t = ckpt.get(p.tensor.name, p.tensor.shape);
      convert(ckpt, t, dtype_, staging.get());
      MIXSERVE_CUDA_CHECK(
          cudaMemcpy(arena_.as<char>(p.offset), staging.get(), bytes, cudaMemcpyHostToDevice));
    }
    done += bytes;
    const int decile = static_cast<int>(10 * done / std::max<size_t>(total_bytes_, 1));
    if (decile != last_decile) {
      last_decile = decile;
      log::info("loading weights to the GPU: ", 10 * decile, "% (", gib(done), " of ",
                gib(total_bytes_), " GiB, ", fp8_ ? "fp8 projections, " : "", dtype_name(dtype_),
                ")");
    }
  }
}

void CudaWeights::make_synthetic(uint64_t seed, cudaStream_t stream) {
  arena_.reset(total_bytes_);
  // FP8 tensors are drawn one at a time into a half-precision scratch and quantized, so the
  // full half-precision model never exists on the device.
  size_t scratch_bytes = 0;
  for (const WeightPlacement& p : placements_) {
    const size_t b = size_t(numel(p.tensor.shape)) * dtype_size(dtype_);
    if (p.fp8) scratch_bytes = std::max(scratch_bytes, b);
  }
  DeviceBuffer scratch(scratch_bytes);
  for (const WeightPlacement& p : placements_) {
    const SyntheticTensorParams sp = synthetic_tensor_params(p.tensor, seed);
    void* dst = p.fp8 ? scratch.get() : arena_.as<char>(p.offset);
    MIXSERVE_CUDA_CHECK(
        fill_synthetic(dst, dtype_, numel(p.tensor.shape), sp.key, sp.half_width, sp.norm, stream));
    if (p.fp8) quantize_into(p, scratch.get(), stream);
  }
  MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
  log::info("synthetic weights made on the GPU: ", gib(total_bytes_), " GiB (",
            fp8_ ? "fp8 projections, " : "", dtype_name(dtype_), ")");
}

}  // namespace mixserve::cuda
