#include "engine/block_manager.h"

#include <algorithm>

#include "util/error.h"

namespace mixserve {

namespace {
uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
}  // namespace

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching)
    : num_blocks_(num_blocks), block_size_(block_size), prefix_caching_(enable_prefix_caching) {
  MIXSERVE_CHECK(num_blocks >= 1, "KV cache: num_blocks must be >= 1, got ", num_blocks);
  MIXSERVE_CHECK(block_size >= 1, "KV cache: block_size must be >= 1, got ", block_size);
  blocks_.resize(size_t(num_blocks));
  for (int32_t i = 0; i < num_blocks; ++i) {
    free_list_.push_back(i);
    blocks_[size_t(i)].free_pos = std::prev(free_list_.end());
  }
}

uint64_t BlockManager::chain_hash(uint64_t prev, std::span<const int32_t> block_tokens) {
  uint64_t h = mix64(prev ^ 0x9e3779b97f4a7c15ULL);
  for (int32_t t : block_tokens) h = mix64(h ^ (uint64_t(uint32_t(t)) + 0x9e3779b97f4a7c15ULL));
  return h;
}

int32_t BlockManager::lookup(uint64_t hash, std::span<const int32_t> block_tokens) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return -1;
  const Block& b = blocks_[size_t(it->second)];
  if (!std::equal(b.tokens.begin(), b.tokens.end(), block_tokens.begin(), block_tokens.end()))
    return -1;
  return it->second;
}

int32_t BlockManager::take_free_block() {
  const int32_t id = free_list_.front();
  free_list_.pop_front();
  Block& b = blocks_[size_t(id)];
  if (b.hashed) {  // evict: the slot is about to be overwritten
    auto it = cached_.find(b.hash);
    if (it != cached_.end() && it->second == id) cached_.erase(it);
    b.hashed = false;
    b.tokens.clear();
  }
  b.ref = 1;
  return id;
}

void BlockManager::take_specific(int32_t id) {
  Block& b = blocks_[size_t(id)];
  if (b.ref == 0) free_list_.erase(b.free_pos);
  ++b.ref;
}

int32_t BlockManager::allocate_for_prefill(std::span<const int32_t> tokens,
                                           int32_t max_new_tokens, BlockTable& table) {
  MIXSERVE_CHECK(table.blocks.empty(), "BlockManager: allocate_for_prefill on a used table");
  // Cached prefix: whole blocks, and never the very last token (its logits are needed).
  std::vector<int32_t> hits;
  std::vector<uint64_t> hit_hashes;
  int32_t hits_free = 0;  // hits that currently sit in the free list
  if (prefix_caching_) {
    const int32_t max_blocks = (static_cast<int32_t>(tokens.size()) - 1) / block_size_;
    uint64_t prev = 0;
    for (int32_t b = 0; b < max_blocks; ++b) {
      auto blk = tokens.subspan(size_t(b) * block_size_, size_t(block_size_));
      const uint64_t h = chain_hash(prev, blk);
      const int32_t id = lookup(h, blk);
      if (id < 0) break;
      hits.push_back(id);
      hit_hashes.push_back(h);
      if (blocks_[size_t(id)].ref == 0) ++hits_free;
      prev = h;
    }
  }
  const int32_t cached_tokens = static_cast<int32_t>(hits.size()) * block_size_;
  const int32_t total = static_cast<int32_t>(tokens.size());
  const int32_t hold = cached_tokens + std::min(total - cached_tokens, max_new_tokens);
  const int32_t fresh = blocks_for_tokens(hold) - static_cast<int32_t>(hits.size());
  if (fresh > num_free_blocks() - hits_free) return -1;
  for (int32_t id : hits) take_specific(id);
  table.blocks = hits;
  table.hashes = hit_hashes;
  for (int32_t i = 0; i < fresh; ++i) table.blocks.push_back(take_free_block());
  return cached_tokens;
}

bool BlockManager::append_slots(BlockTable& table, int32_t num_tokens) {
  const int32_t need = blocks_for_tokens(num_tokens) - static_cast<int32_t>(table.blocks.size());
  if (need <= 0) return true;
  if (need > num_free_blocks()) return false;
  for (int32_t i = 0; i < need; ++i) table.blocks.push_back(take_free_block());
  return true;
}

void BlockManager::commit_computed(std::span<const int32_t> tokens, int32_t num_computed,
                                   BlockTable& table) {
  if (!prefix_caching_) return;
  const size_t full = size_t(num_computed / block_size_);
  for (size_t b = table.hashes.size(); b < full; ++b) {
    auto blk = tokens.subspan(b * block_size_, size_t(block_size_));
    const uint64_t h = chain_hash(b == 0 ? 0 : table.hashes[b - 1], blk);
    table.hashes.push_back(h);
    const int32_t id = table.blocks[b];
    Block& block = blocks_[size_t(id)];
    // An equal block computed by another sequence at the same time keeps the key; this one
    // stays private and is simply freed later.
    if (block.hashed || cached_.count(h)) continue;
    block.hashed = true;
    block.hash = h;
    block.tokens.assign(blk.begin(), blk.end());
    cached_[h] = id;
  }
}

void BlockManager::free(BlockTable& table) {
  // Tail first, so that within this sequence the head ends up most recently freed.
  for (auto it = table.blocks.rbegin(); it != table.blocks.rend(); ++it) {
    Block& b = blocks_[size_t(*it)];
    MIXSERVE_CHECK(b.ref > 0, "BlockManager: double free of block ", *it);
    if (--b.ref > 0) continue;
    if (b.hashed) {
      free_list_.push_back(*it);
      b.free_pos = std::prev(free_list_.end());
    } else {
      free_list_.push_front(*it);
      b.free_pos = free_list_.begin();
    }
  }
  table.blocks.clear();
  table.hashes.clear();
}

}  // namespace mixserve
