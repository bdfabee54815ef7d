// BlockManager: the paged KV cache's bookkeeping (which block holds what), on the host.
//
// The cache is num_blocks blocks of block_size token slots. A sequence owns a block table
// (physical block ids in order); token p of the sequence lives in slot
// table[p / block_size] * block_size + p % block_size.
//
// Prefix caching: once a block is full and its KV computed, it is keyed by a hash chained over
// (hash of the previous block, the block's tokens), so equal keys mean equal whole prefixes.
// A later sequence with the same prefix takes the block (ref count + 1) instead of computing
// it. Freed blocks keep their key and stay findable until the free list needs them; they are
// then evicted least recently freed first (a sequence's tail before its head, since a tail
// block is useless without its head).
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace mixserve {

// The KV state of one sequence, as the block manager sees it.
struct BlockTable {
  std::vector<int32_t> blocks;   // physical ids, in token order
  std::vector<uint64_t> hashes;  // chained keys of the leading full, computed blocks
};

class BlockManager {
 public:
  BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  // Blocks with no owner, cached ones included (they are reusable).
  int32_t num_free_blocks() const { return static_cast<int32_t>(free_list_.size()); }
  float usage() const { return 1.0f - float(num_free_blocks()) / float(num_blocks_); }
  int32_t blocks_for_tokens(int64_t num_tokens) const {
    return static_cast<int32_t>((num_tokens + block_size_ - 1) / block_size_);
  }

  // First allocation of a sequence with no blocks: takes the longest cached prefix of
  // `tokens` (whole blocks, leaving at least one token to compute so the model yields
  // logits), then fresh blocks for the next min(rest, max_new_tokens) tokens. All or nothing:
  // returns the number of cached tokens, or -1 (table untouched) if the free blocks do not
  // suffice.
  int32_t allocate_for_prefill(std::span<const int32_t> tokens, int32_t max_new_tokens,
                               BlockTable& table);
  // Grows a table to hold `num_tokens` slots (a further prefill chunk, or a decode token that
  // crosses into a new block). Returns false (table untouched) if the free blocks do not
  // suffice.
  bool append_slots(BlockTable& table, int32_t num_tokens);
  // Registers the blocks that became full: tokens[0, num_computed) have their KV written.
  void commit_computed(std::span<const int32_t> tokens, int32_t num_computed, BlockTable& table);
  // Drops the table's references; blocks with a key stay cached until evicted.
  void free(BlockTable& table);

  // Hash of a full block given the previous block's hash (0 for the first block).
  static uint64_t chain_hash(uint64_t prev, std::span<const int32_t> block_tokens);

 private:
  struct Block {
    int32_t ref = 0;
    bool hashed = false;
    uint64_t hash = 0;
    std::vector<int32_t> tokens;             // of a hashed block, to rule out hash collisions
    std::list<int32_t>::iterator free_pos;   // valid while ref == 0
  };

  int32_t lookup(uint64_t hash, std::span<const int32_t> block_tokens) const;  // -1 = miss
  int32_t take_free_block();  // front of the free list; evicts its key
  void take_specific(int32_t id);  // a cached block with ref 0 leaves the free list

  const int32_t num_blocks_;
  const int32_t block_size_;
  const bool prefix_caching_;
  std::vector<Block> blocks_;
  // Free blocks: keyless ones at the front (used first), keyed ones behind in the order they
  // were freed (the front is the least recently used, evicted first).
  std::list<int32_t> free_list_;
  std::unordered_map<uint64_t, int32_t> cached_;  // key -> block
};

}  // namespace mixserve
