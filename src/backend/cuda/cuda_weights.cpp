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

size_t local_numel(const WeightPlacement& p) { return size_t(p.slice.rows * p.slice.cols); }

bool is_sliced(const WeightPlacement& p) {
  return local_numel(p) != size_t(numel(p.tensor.shape));
}

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

void CudaWeights::place(const ExpectedTensor& t, size_t offset, TensorSlice slice) {
  const int64_t R = t.shape.size() == 2 ? t.shape[0] : 1, C = t.shape.back();
  if (slice.rows < 0) slice.rows = R;
  if (slice.cols < 0) slice.cols = C;
  placements_.push_back({t, offset, false, 0, slice});
}

void CudaWeights::place_fp8(const ExpectedTensor& t, size_t offset, size_t scale_offset,
                            TensorSlice slice) {
  place(t, offset, slice);
  placements_.back().fp8 = true;
  placements_.back().scale_offset = scale_offset;
}

CudaWeights::CudaWeights(const ModelConfig& c, DType dtype, bool fp8, const dist::ShardSpec& shard)
    : config_(c), dtype_(dtype), fp8_(fp8) {
  MIXSERVE_CHECK(dtype == DType::kBF16 || dtype == DType::kF16,
                 "CUDA backend: --dtype must be bf16 or fp16, got ", dtype_name(dtype));
  namespace wn = weight_names;
  const bool sharded = shard.size > 1;
  const int64_t V = c.vocab_size, H = c.hidden_size, Ffull = c.intermediate_size;
  const int64_t D = c.head_dim > 0 ? c.head_dim : H / c.num_attention_heads;
  const int64_t q_full = int64_t{c.num_attention_heads} * D;
  const int64_t kv_full = int64_t{c.num_key_value_heads} * D;
  const int64_t Efull = c.moe ? c.num_local_experts : 1;
  // This shard's slices (the whole model when unsharded): query rows [q0, q0 + q), KV rows
  // [kv0, kv0 + kv), FFN rows [f0, f0 + F) of experts [e0, e0 + E).
  const int64_t q0 = sharded ? shard.q_head_begin * D : 0;
  const int64_t q = sharded ? shard.num_q_heads * D : q_full;
  const int64_t kv0 = sharded ? shard.kv_head_begin * D : 0;
  const int64_t kv = sharded ? shard.num_kv_heads * D : kv_full;
  const int64_t f0 = sharded ? shard.ffn_begin : 0;
  const int64_t F = sharded ? shard.ffn_size : Ffull;
  const int64_t e0 = sharded && c.moe ? shard.expert_begin : 0;
  const int64_t E = sharded && c.moe ? shard.num_experts : Efull;
  const TensorSlice q_rows{q0, q, 0, H}, k_rows{kv0, kv, 0, H}, f_rows{f0, F, 0, H};
  const TensorSlice wo_cols{0, H, q0, q}, w2_cols{0, H, f0, F};
  embed_ = reserve(V * H);
  place({wn::embed(), {V, H}}, embed_);
  layers_.resize(c.num_hidden_layers);
  // Projection weights: el bytes per element; with FP8 also a float scale per row (placed at
  // `scales + row * 4`).
  const size_t el = fp8 ? 1 : dtype_size(dtype);
  auto place_proj = [&](const ExpectedTensor& t, size_t offset, size_t scales, int64_t row,
                        const TensorSlice& slice) {
    if (fp8) {
      place_fp8(t, offset, scales + size_t(row) * 4, slice);
    } else {
      place(t, offset, slice);
    }
  };
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    LayerOffsets& o = layers_[l];
    o.attn_norm = reserve(H);
    place({wn::attn_norm(l), {H}}, o.attn_norm);
    o.wqkv = reserve((q + 2 * kv) * H, el);
    if (fp8) o.wqkv_s = reserve(q + 2 * kv, 4);
    place_proj({wn::q_proj(l), {q_full, H}}, o.wqkv, o.wqkv_s, 0, q_rows);
    place_proj({wn::k_proj(l), {kv_full, H}}, o.wqkv + q * H * el, o.wqkv_s, q, k_rows);
    place_proj({wn::v_proj(l), {kv_full, H}}, o.wqkv + (q + kv) * H * el, o.wqkv_s, q + kv,
               k_rows);
    o.wo = reserve(H * q, el);
    if (fp8) o.wo_s = reserve(H, 4);
    place_proj({wn::o_proj(l), {H, q_full}}, o.wo, o.wo_s, 0, wo_cols);
    o.ffn_norm = reserve(H);
    place({wn::ffn_norm(l), {H}}, o.ffn_norm);
    o.router = 0;
    if (c.moe) {
      o.router = reserve(Efull * H);  // replicated: every rank routes over all experts
      place({wn::router(l), {Efull, H}}, o.router);
    }
    o.w13 = reserve(E * 2 * F * H, el);
    o.w2 = reserve(E * H * F, el);
    if (fp8) {
      o.w13_s = reserve(E * 2 * F, 4);
      o.w2_s = reserve(E * H, 4);
    }
    for (int64_t e = 0; e < E; ++e) {
      const int ei = static_cast<int>(e0 + e);  // the checkpoint's expert index
      place_proj({wn::expert_gate(c, l, ei), {Ffull, H}}, o.w13 + e * 2 * F * H * el, o.w13_s,
                 e * 2 * F, f_rows);
      place_proj({wn::expert_up(c, l, ei), {Ffull, H}}, o.w13 + (e * 2 * F + F) * H * el,
                 o.w13_s, e * 2 * F + F, f_rows);
      place_proj({wn::expert_down(c, l, ei), {H, Ffull}}, o.w2 + e * H * F * el, o.w2_s, e * H,
                 w2_cols);
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

void CudaWeights::copy_slice(const WeightPlacement& p, const void* src, size_t elem, void* dst,
                             cudaStream_t stream) {
  const TensorSlice& s = p.slice;
  const size_t C = size_t(p.tensor.shape.back());
  const char* from = static_cast<const char*>(src) + (size_t(s.row_begin) * C + s.col_begin) * elem;
  const size_t width = size_t(s.cols) * elem;
  if (stream == nullptr) {  // from a host buffer that is reused as soon as this returns
    MIXSERVE_CUDA_CHECK(
        cudaMemcpy2D(dst, width, from, C * elem, width, size_t(s.rows), cudaMemcpyDefault));
    return;
  }
  MIXSERVE_CUDA_CHECK(cudaMemcpy2DAsync(dst, width, from, C * elem, width, size_t(s.rows),
                                        cudaMemcpyDefault, stream));
}

void CudaWeights::quantize_into(const WeightPlacement& p, const void* src, cudaStream_t stream) {
  const int64_t rows = p.slice.rows, cols = p.slice.cols;
  MIXSERVE_CHECK(cols <= 0x7fffffff, "FP8: tensor ", p.tensor.name, " has too many columns");
  MIXSERVE_CUDA_CHECK(quantize_rows_fp8(src, dtype_, rows, static_cast<int>(cols),
                                        arena_.as<uint8_t>(p.offset),
                                        arena_.as<float>(p.scale_offset), stream));
}

void CudaWeights::load_fp8_tensor(const Checkpoint& ckpt, const WeightPlacement& p, void* staging,
                                  void* scratch) {
  const TensorView& t = ckpt.get(p.tensor.name, p.tensor.shape);
  if (t.dtype == DType::kF8E4M3) {  // pre-quantized: bytes and (the slice's rows') scales
    const std::vector<float> scales = fp8_row_scales(ckpt, t);
    copy_slice(p, t.data, 1, arena_.as<char>(p.offset), nullptr);
    MIXSERVE_CUDA_CHECK(cudaMemcpy(arena_.as<char>(p.scale_offset),
                                   scales.data() + p.slice.row_begin, size_t(p.slice.rows) * 4,
                                   cudaMemcpyHostToDevice));
    return;
  }
  convert(ckpt, t, dtype_, staging);
  copy_slice(p, staging, dtype_size(dtype_), scratch, nullptr);
  quantize_into(p, scratch, nullptr);
  MIXSERVE_CUDA_CHECK(cudaDeviceSynchronize());
}

void CudaWeights::load(const Checkpoint& ckpt) {
  arena_.reset(total_bytes_);
  size_t staging_bytes = 0, scratch_bytes = 0;
  for (const WeightPlacement& p : placements_) {
    const size_t b = size_t(numel(p.tensor.shape)) * dtype_size(dtype_);
    staging_bytes = std::max(staging_bytes, b);
    if (p.fp8) scratch_bytes = std::max(scratch_bytes, local_numel(p) * dtype_size(dtype_));
  }
  PinnedBuffer staging(staging_bytes);
  DeviceBuffer scratch(scratch_bytes);  // a half-precision tensor before quantization
  size_t done = 0;
  int last_decile = -1;
  for (const WeightPlacement& p : placements_) {
    const size_t bytes = local_numel(p) * (p.fp8 ? 1 : dtype_size(dtype_));
    if (p.fp8) {
      load_fp8_tensor(ckpt, p, staging.get(), scratch.get());
    } else {
      const TensorView& t = ckpt.get(p.tensor.name, p.tensor.shape);
      convert(ckpt, t, dtype_, staging.get());
      copy_slice(p, staging.get(), dtype_size(dtype_), arena_.as<char>(p.offset), nullptr);
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
  // full half-precision model never exists on the device. A shard's slice is cut from the
  // whole tensor drawn into `full`: the shards of a synthetic model are slices of one model.
  const size_t el = dtype_size(dtype_);
  size_t scratch_bytes = 0, full_bytes = 0;
  for (const WeightPlacement& p : placements_) {
    if (p.fp8) scratch_bytes = std::max(scratch_bytes, local_numel(p) * el);
    if (is_sliced(p)) full_bytes = std::max(full_bytes, size_t(numel(p.tensor.shape)) * el);
  }
  DeviceBuffer scratch(scratch_bytes), full(full_bytes);
  for (const WeightPlacement& p : placements_) {
    const SyntheticTensorParams sp = synthetic_tensor_params(p.tensor, seed);
    void* dst = p.fp8 ? scratch.get() : arena_.as<char>(p.offset);
    void* draw = is_sliced(p) ? full.get() : dst;
    MIXSERVE_CUDA_CHECK(fill_synthetic(draw, dtype_, numel(p.tensor.shape), sp.key, sp.half_width,
                                       sp.norm, stream));
    if (draw != dst) copy_slice(p, draw, el, dst, stream);
    if (p.fp8) quantize_into(p, scratch.get(), stream);
  }
  MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
  log::info("synthetic weights made on the GPU: ", gib(total_bytes_), " GiB (",
            fp8_ ? "fp8 projections, " : "", dtype_name(dtype_), ")");
}

}  // namespace mixserve::cuda
