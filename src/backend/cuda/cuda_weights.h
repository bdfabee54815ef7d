// The model's weights on the device, in the run-time dtype (BF16 or FP16), in one allocation.
//
// Layouts (row-major, nn.Linear's [out, in]): V = vocab, H = hidden, Hq / Hkv = heads,
// D = head dim, E = experts (1 for dense models), F = FFN size.
//   embed [V, H]; final_norm [H]; lm_head [V, H] (the embedding itself when tied)
//   per layer: attn_norm [H]; wqkv [(Hq + 2 Hkv) D, H] = q_proj | k_proj | v_proj rows;
//              wo [H, Hq D]; ffn_norm [H]; router [E, H] (MoE only);
//              w13 [E, 2F, H] = per expert w1 (gate) rows then w3 (up) rows, one GEMM;
//              w2 [E, H, F]
// Each Hugging Face tensor has a Placement (byte offset in the arena); loading from a
// checkpoint and synthetic generation both fill the placements.
//
// FP8 (quantization on): wqkv, wo, w13 and w2 are E4M3 bytes with one float32 scale per row
// (output channel): wqkv_scale [(Hq + 2 Hkv) D], wo_scale [H], w13_scale [E, 2F],
// w2_scale [E, H]. Half-precision tensors are quantized on the device from the dtype (so
// synthetic and loaded weights quantize identically); F8_E4M3 checkpoint tensors are copied
// as they are, a per-tensor scale repeated per row. Embeddings, norms, router, lm_head stay
// in dtype.
//
// Shards (tensor / expert parallelism, dist/sharding.h): the layouts above with the local
// counts (Hq, Hkv, F of the shard; E = the shard's experts), each tensor a slice of the
// checkpoint's: q/k/v rows of the shard's heads, wo's columns of its query heads, w1/w3 rows
// and w2 columns of its FFN range, only its experts under EP. FP8 scales are per output row,
// so row slices take their rows' scales and column slices (wo, w2) keep every row's scale:
// s[o] * sum over the slice of q[o, i] x[i], summed over the ranks, is the full row's product.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "model/config.h"
#include "dist/sharding.h"
#include "model/dtype.h"
#include "model/weight_names.h"

namespace mixserve {
class Checkpoint;
}

namespace mixserve::cuda {

struct CudaLayerWeights {
  const void* attn_norm = nullptr;
  const void* wqkv = nullptr;
  const void* wo = nullptr;
  const void* ffn_norm = nullptr;
  const void* router = nullptr;  // null for dense models
  const void* w13 = nullptr;
  const void* w2 = nullptr;
  // FP8 only (null otherwise): per-row scales of the E4M3 weights above.
  const float* wqkv_scale = nullptr;  // [(Hq + 2 Hkv) D]
  const float* wo_scale = nullptr;    // [H]
  const float* w13_scale = nullptr;   // [E, 2F]
  const float* w2_scale = nullptr;    // [E, H]
};

// The part of a checkpoint tensor, seen as [R, C] (a 1-D tensor as one row), that is stored:
// rows [row_begin, row_begin + rows) x columns [col_begin, col_begin + cols).
struct TensorSlice {
  int64_t row_begin = 0, rows = 0, col_begin = 0, cols = 0;
};

struct WeightPlacement {
  ExpectedTensor tensor;    // Hugging Face name and (full) shape
  size_t offset = 0;        // bytes into the arena
  bool fp8 = false;         // stored as E4M3 with per-row scales
  size_t scale_offset = 0;  // bytes into the arena of the [rows] float scales (fp8 only)
  TensorSlice slice;        // the whole tensor unless sharded; stored as [rows, cols]
};

class CudaWeights {
 public:
  // Plans the layout of `config` in `dtype` (projections in FP8 when `fp8`); allocates nothing.
  // With a shard of size > 1, only that shard's slices (see above); config is the full model's.
  CudaWeights(const ModelConfig& config, DType dtype, bool fp8 = false,
              const dist::ShardSpec& shard = {});

  size_t bytes() const { return total_bytes_; }
  DType dtype() const { return dtype_; }
  bool fp8() const { return fp8_; }
  const std::vector<WeightPlacement>& placements() const { return placements_; }

  // Allocates the arena and copies every tensor of the checkpoint, converted to dtype (through
  // a pinned staging buffer), logging progress. Throws naming the tensor on failure.
  void load(const Checkpoint& checkpoint);
  // Allocates the arena and draws every tensor on the device as make_model would with `seed`.
  void make_synthetic(uint64_t seed, cudaStream_t stream);

  const void* embed() const { return at(embed_); }
  const void* final_norm() const { return at(final_norm_); }
  const void* lm_head() const { return at(lm_head_); }
  CudaLayerWeights layer(int l) const;

 private:
  struct LayerOffsets {
    size_t attn_norm, wqkv, wo, ffn_norm, router, w13, w2;
    size_t wqkv_s = 0, wo_s = 0, w13_s = 0, w2_s = 0;
  };
  size_t reserve(size_t elements, size_t element_bytes);
  size_t reserve(size_t elements) { return reserve(elements, dtype_size(dtype_)); }
  // A placement of the whole tensor, or (rows / cols >= 0) of that slice of it.
  void place(const ExpectedTensor& t, size_t offset, TensorSlice slice = {0, -1, 0, -1});
  void place_fp8(const ExpectedTensor& t, size_t offset, size_t scale_offset,
                 TensorSlice slice = {0, -1, 0, -1});
  // Copies placement p's slice of the full tensor at src ([R, C] of elem-byte elements; host or
  // device) to dst as [rows, cols]; synchronous when stream is null.
  static void copy_slice(const WeightPlacement& p, const void* src, size_t elem, void* dst,
                         cudaStream_t stream);
  // Quantizes the [rows, cols] slice (dtype, contiguous) at src (device) into placement p.
  void quantize_into(const WeightPlacement& p, const void* src, cudaStream_t stream);
  void load_fp8_tensor(const Checkpoint& ckpt, const WeightPlacement& p, void* staging,
                       void* scratch);
  const void* at(size_t offset) const { return arena_.as<const char>(offset); }

  ModelConfig config_;
  DType dtype_;
  bool fp8_ = false;
  size_t total_bytes_ = 0;
  size_t embed_ = 0, final_norm_ = 0, lm_head_ = 0;
  std::vector<LayerOffsets> layers_;
  std::vector<WeightPlacement> placements_;
  DeviceBuffer arena_;
};

}  // namespace mixserve::cuda
