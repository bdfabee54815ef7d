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
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "model/config.h"
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
};

struct WeightPlacement {
  ExpectedTensor tensor;  // Hugging Face name and shape
  size_t offset = 0;      // bytes into the arena
};

class CudaWeights {
 public:
  // Plans the layout of `config` in `dtype`; allocates nothing.
  CudaWeights(const ModelConfig& config, DType dtype);

  size_t bytes() const { return total_bytes_; }
  DType dtype() const { return dtype_; }
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
  };
  size_t reserve(size_t elements);
  void place(const ExpectedTensor& t, size_t offset) { placements_.push_back({t, offset}); }
  const void* at(size_t offset) const { return arena_.as<const char>(offset); }

  ModelConfig config_;
  DType dtype_;
  size_t total_bytes_ = 0;
  size_t embed_ = 0, final_norm_ = 0, lm_head_ = 0;
  std::vector<LayerOffsets> layers_;
  std::vector<WeightPlacement> placements_;
  DeviceBuffer arena_;
};

}  // namespace mixserve::cuda
