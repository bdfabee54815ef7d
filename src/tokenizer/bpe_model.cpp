// BPE merging: a doubly linked list of symbols plus a min-heap of candidate merges keyed by
// (rank, position of the left symbol). A popped candidate is stale when either symbol has been
// merged away since it was pushed; it is then dropped. Each merge pushes at most two new
// candidates, so a word of n characters costs O(n log n), with no per-merge allocation: this
// matters because the Mixtral tokenizer has no pre-tokenizer and a whole document is one word.
#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <queue>

#include "util/error.h"

namespace mixserve::tokenizer_detail {

void MergeTable::build(const std::vector<MergeRule>& rules) {
  rules_.clear();
  size_t capacity = 16;
  while (capacity < rules.size() * 2) capacity *= 2;
  slots_.assign(capacity, -1);
  mask_ = capacity - 1;
  shift_ = 64 - __builtin_ctzll(capacity);
  for (const MergeRule& r : rules) {
    const uint64_t key = pack(r.left, r.right);
    size_t slot = hash(key);
    for (;; slot = (slot + 1) & mask_) {
      const int32_t idx = slots_[slot];
      if (idx < 0) {
        slots_[slot] = static_cast<int32_t>(rules_.size());
        rules_.push_back(r);
        break;
      }
      MergeRule& existing = rules_[static_cast<size_t>(idx)];
      if (existing.left == r.left && existing.right == r.right) {
        existing = r;  // HF collects merges into a map: the later line wins
        break;
      }
    }
  }
}

size_t next_utf8_char(std::string_view s, size_t i, uint32_t& codepoint) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  codepoint = 0xFFFFFFFFu;
  if (b0 < 0x80) {
    codepoint = b0;
    return 1;
  }
  size_t len;
  uint32_t cp;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 1;
  }
  if (i + len > s.size()) return 1;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 1;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 1;
  codepoint = cp;
  return len;
}

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options, const std::string& where)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  int32_t max_id = -1;
  for (const auto& [piece, id] : vocab_) {
    MIXSERVE_CHECK(id >= 0, where, ".vocab: token \"", piece, "\" has negative id ", id);
    max_id = std::max(max_id, id);
  }
  id_to_piece_.assign(static_cast<size_t>(max_id + 1), std::string());
  codepoint_id_.assign(kDirectCodepoints, -1);
  for (const auto& [piece, id] : vocab_) {
    MIXSERVE_CHECK(id_to_piece_[static_cast<size_t>(id)].empty(), where, ".vocab: id ", id,
                   " is used twice (\"", id_to_piece_[static_cast<size_t>(id)], "\" and \"",
                   piece, "\")");
    id_to_piece_[static_cast<size_t>(id)] = piece;
    uint32_t cp;
    if (!piece.empty() && next_utf8_char(piece, 0, cp) == piece.size() && cp < kDirectCodepoints) {
      codepoint_id_[cp] = id;
    }
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    byte_ids_[b] = id_of(name);
  }
  if (!options_.unk_token.empty()) {
    unk_id_ = id_of(options_.unk_token);
    MIXSERVE_CHECK(unk_id_ >= 0, where, ".unk_token \"", options_.unk_token,
                   "\" is not in the vocab");
  }
  std::vector<MergeRule> rules;
  rules.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& [a, b] = merges[i];
    const int32_t left = id_of(a), right = id_of(b), merged = id_of(a + b);
    MIXSERVE_CHECK(left >= 0 && right >= 0, where, ".merges[", i, "] \"", a, " ", b,
                   "\": token \"", left < 0 ? a : b, "\" is not in the vocab");
    MIXSERVE_CHECK(merged >= 0, where, ".merges[", i, "] \"", a, " ", b, "\": the merged token \"",
                   a + b, "\" is not in the vocab");
    rules.push_back({left, right, static_cast<uint32_t>(i), merged});
  }
  merges_.build(rules);
}

int32_t BpeModel::id_of(std::string_view piece) const {
  const auto it = vocab_.find(std::string(piece));
  return it == vocab_.end() ? -1 : it->second;
}

int32_t BpeModel::char_id(std::string_view ch, uint32_t codepoint) const {
  if (codepoint < kDirectCodepoints) return codepoint_id_[codepoint];
  if (codepoint == 0xFFFFFFFFu) return -1;  // an invalid byte is never a piece
  return id_of(ch);
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const int32_t id = id_of(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, -1, true});
    if (n > 0) symbols[static_cast<size_t>(n - 1)].next = n;
  };
  bool pending_unk = false;  // an unknown run not yet added (fused when fuse_unk)
  for (size_t i = 0; i < word.size();) {
    uint32_t cp;
    const size_t len = next_utf8_char(word, i, cp);
    const std::string_view ch = word.substr(i, len);
    i += len;
    if (const int32_t id = char_id(ch, cp); id >= 0) {
      if (pending_unk) add(unk_id_), pending_unk = false;
      add(id);
      continue;
    }
    if (options_.byte_fallback &&
        std::all_of(ch.begin(), ch.end(),
                    [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      if (pending_unk) add(unk_id_), pending_unk = false;
      for (char c : ch) add(byte_ids_[static_cast<unsigned char>(c)]);
      continue;
    }
    if (unk_id_ < 0) continue;
    if (pending_unk && !options_.fuse_unk) add(unk_id_);
    pending_unk = true;
  }
  if (pending_unk) add(unk_id_);
  apply_merges(symbols);
  for (const Symbol& s : symbols) {
    if (s.alive) out.push_back(s.id);
  }
}

void BpeModel::apply_merges(std::vector<Symbol>& symbols) const {
  // Candidate = (rank << 32) | left position: the heap pops the lowest rank, then the
  // leftmost position, which is tokenizers' Merge ordering.
  std::vector<uint64_t> heap;
  heap.reserve(symbols.size());
  auto candidate = [&](int32_t pos) {
    const Symbol& l = symbols[static_cast<size_t>(pos)];
    if (l.next < 0) return;
    if (const MergeRule* m = merges_.find(l.id, symbols[static_cast<size_t>(l.next)].id)) {
      heap.push_back((static_cast<uint64_t>(m->rank) << 32) | static_cast<uint32_t>(pos));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (size_t pos = 0; pos + 1 < symbols.size(); ++pos) {
    if (const MergeRule* m = merges_.find(symbols[pos].id, symbols[pos + 1].id)) {
      heap.push_back((static_cast<uint64_t>(m->rank) << 32) | pos);
    }
  }
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const auto rank = static_cast<uint32_t>(top >> 32);
    const auto pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
    Symbol& left = symbols[static_cast<size_t>(pos)];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    const MergeRule* m = merges_.find(left.id, right.id);
    if (m == nullptr || m->rank != rank) continue;  // the pair changed since it was queued
    left.id = m->merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = pos;
    if (left.prev >= 0) candidate(left.prev);
    candidate(pos);
  }
}

}  // namespace mixserve::tokenizer_detail
