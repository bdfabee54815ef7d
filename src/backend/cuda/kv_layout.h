// The paged KV pool's layout, shared by every kernel that reads or writes the cache, the
// backend's allocation and the tests.
//
// A layer's K (and V) pool holds the slots of the engine's blocks (slot = block * block_size +
// offset) in tiles of kKvTile consecutive slots; a tile is [Hkv, kKvTile, D], head-major. So
// the 16 keys of one head in one tile are one contiguous run (2 KB for an E4M3 cache at
// D = 128), the unit a decode warp and a prefill tile read. The slot-major layout before it
// ([slots, Hkv, D]) had a warp read 128 B of every 1 KB slot row (decode attention ~2.3 TB/s
// on the H100; docs/perf/NOTES.md, session 13). Any block size works: a block of 16 slots
// starting at a multiple of 16 is exactly one tile; pools are padded to whole tiles.
#pragma once

#include <cstddef>
#include <cstdint>

#ifdef __CUDACC__
#define MIXSERVE_KV_HD __host__ __device__ __forceinline__
#else
#define MIXSERVE_KV_HD inline
#endif

namespace mixserve::cuda {

constexpr int kKvTile = 16;  // slots per tile

// Row index (times D: the element offset) of slot `slot`, KV head g, in a pool of Hkv heads.
MIXSERVE_KV_HD int64_t kv_row(int64_t slot, int g, int Hkv) {
  return ((slot >> 4) * Hkv + g) * kKvTile + (slot & (kKvTile - 1));
}

// Slots a pool for num_slots slots must have room for (whole tiles).
MIXSERVE_KV_HD int64_t kv_pool_slots(int64_t num_slots) {
  return (num_slots + kKvTile - 1) / kKvTile * kKvTile;
}

}  // namespace mixserve::cuda

#undef MIXSERVE_KV_HD
