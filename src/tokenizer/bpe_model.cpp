// BPE merging: a doubly linked list of symbols plus a min-heap of candidate merges keyed by
// (rank, position of the left symbol). A popped candidate is stale when either symbol has been
// merged away since it was pushed; it is then dropped. Each merge pushes at most two new
// candidates, so a word of n characters costs O(n log n), with no per-merge allocation: this
// matters because the Mixtral tokenizer has no pre-tokenizer and a whole document is one word.
#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "util/error.h"

namespace mixserve::tokenizer_detail {
namespace {
std::atomic<uint64_t> next_model_serial{1};
}  // namespace

void MergeTable::build(const std::vector<MergeRule>& rules) {
  size_t capacity = 16;
  while (capacity < rules.size() * 2) capacity *= 2;
  slots_.assign(capacity, Slot{kEmpty, {}});
  mask_ = capacity - 1;
  shift_ = 64 - __builtin_ctzll(capacity);
  count_ = 0;
  for (const MergeRule& r : rules) {
    const uint64_t key = pack(r.left, r.right);
    for (size_t slot = hash(key);; slot = (slot + 1) & mask_) {
      Slot& s = slots_[slot];
      if (s.key == kEmpty) {
        s = {key, {r.rank, r.merged}};
        ++count_;
        break;
      }
      if (s.key == key) {
        s.hit = {r.rank, r.merged};  // HF collects merges into a map: the later line wins
        break;
      }
    }
  }
}

void CharPairSet::insert(uint32_t a, uint32_t b) {
  const int ia = small_index(a), ib = small_index(b);
  if (ia >= 0 && ib >= 0) {
    const size_t bit = static_cast<size_t>(ia) * kSmall + static_cast<size_t>(ib);
    small_[bit / 64] |= uint64_t{1} << (bit % 64);
    return;
  }
  if ((count_ + 1) * 2 > slots_.size()) grow();
  const uint64_t key = (static_cast<uint64_t>(a) << 32) | b;
  for (size_t slot = (key * 0x9E3779B97F4A7C15ull) >> shift_;; slot = (slot + 1) & mask_) {
    if (slots_[slot] == key) return;
    if (slots_[slot] == kEmpty) {
      slots_[slot] = key;
      ++count_;
      return;
    }
  }
}

void CharPairSet::grow() {
  std::vector<uint64_t> old = std::move(slots_);
  const size_t capacity = old.empty() ? 1024 : old.size() * 2;
  slots_.assign(capacity, kEmpty);
  mask_ = capacity - 1;
  shift_ = 64 - __builtin_ctzll(capacity);
  count_ = 0;
  for (uint64_t key : old) {
    if (key != kEmpty) insert(static_cast<uint32_t>(key >> 32), static_cast<uint32_t>(key));
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
    : vocab_(std::move(vocab)), options_(std::move(options)), serial_(next_model_serial++) {
  int32_t max_id = -1;
  for (const auto& [piece, id] : vocab_) {
    MIXSERVE_CHECK(id >= 0, where, ".vocab: token \"", piece, "\" has negative id ", id);
    max_id = std::max(max_id, id);
  }
  id_to_piece_.assign(static_cast<size_t>(max_id + 1), std::string());
  codepoint_id_.assign(kDirectCodepoints, -1);
  for (const auto& [piece, id] : vocab_) {
    MIXSERVE_CHECK(id_to_piece_[static_cast<size_t>(id)].empty(), where, ".vocab: id ", id,
                   " is used twice (\"", id_to_piece_[static_cast<size_t>(id)], "\" and \"", piece,
                   "\")");
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
    MIXSERVE_CHECK(left >= 0 && right >= 0, where, ".merges[", i, "] \"", a, " ", b, "\": token \"",
                   left < 0 ? a : b, "\" is not in the vocab");
    MIXSERVE_CHECK(merged >= 0, where, ".merges[", i, "] \"", a, " ", b, "\": the merged token \"",
                   a + b, "\" is not in the vocab");
    rules.push_back({left, right, static_cast<uint32_t>(i), merged});
  }
  merges_.build(rules);
  build_barriers(rules);
}

void BpeModel::build_barriers(const std::vector<MergeRule>& rules) {
  std::vector<bool> fallback_id(id_to_piece_.size(), false);
  for (int32_t id : byte_ids_) {
    if (id >= 0) fallback_id[static_cast<size_t>(id)] = true;
  }
  if (unk_id_ >= 0) fallback_id[static_cast<size_t>(unk_id_)] = true;
  for (size_t id = 0; id < id_to_piece_.size(); ++id) {
    const std::string& piece = id_to_piece_[id];
    uint32_t prev = kNoChar;
    for (size_t i = 0; i < piece.size();) {
      uint32_t cp;
      i += next_utf8_char(piece, i, cp);
      if (prev != kNoChar && cp != 0xFFFFFFFFu) joinable_.insert(prev, cp);
      prev = cp == 0xFFFFFFFFu ? kNoChar : cp;
    }
  }
  // Byte-fallback and unknown symbols carry no character; cutting beside them is only safe
  // when no merge can take them in.
  use_barriers_ = std::none_of(rules.begin(), rules.end(), [&](const MergeRule& r) {
    return fallback_id[static_cast<size_t>(r.left)] || fallback_id[static_cast<size_t>(r.right)];
  });
}

int32_t BpeModel::id_of(std::string_view piece) const {
  const auto it = vocab_.find(std::string(piece));
  return it == vocab_.end() ? -1 : it->second;
}

bool BpeModel::bytes_available(std::string_view ch) const {
  return options_.byte_fallback && std::all_of(ch.begin(), ch.end(), [&](char c) {
           return byte_ids_[static_cast<unsigned char>(c)] >= 0;
         });
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
  if (!use_barriers_) return tokenize_segment(word, out);
  size_t seg_begin = 0;
  uint32_t prev = kNoChar;
  for (size_t i = 0; i < word.size();) {
    uint32_t cp;
    const size_t len = next_utf8_char(word, i, cp);
    const int32_t id = char_id(word.substr(i, len), cp);
    const uint32_t cur = id >= 0 ? cp : bytes_available(word.substr(i, len)) ? kByteChar : kUnkChar;
    if (i > seg_begin && barrier(prev, cur)) {
      cached_segment(word.substr(seg_begin, i - seg_begin), out);
      seg_begin = i;
    }
    prev = cur;
    i += len;
  }
  cached_segment(word.substr(seg_begin), out);
}

namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

// Per-thread memo of segment -> ids (tokenizers keeps a similar word cache). Keyed by the
// model's serial number so a new model at a reused address never sees old entries.
struct SegmentCache {
  uint64_t model_serial = 0;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
};
constexpr size_t kCacheMaxEntries = 1 << 16;
constexpr size_t kCacheMaxSegment = 64;  // bytes; longer segments are rare and not cached

}  // namespace

void BpeModel::cached_segment(std::string_view segment, std::vector<int32_t>& out) const {
  if (segment.size() > kCacheMaxSegment) return tokenize_segment(segment, out);
  thread_local SegmentCache cache;
  if (cache.model_serial != serial_ || cache.map.size() >= kCacheMaxEntries) {
    cache.map.clear();
    cache.model_serial = serial_;
  }
  if (const auto it = cache.map.find(segment); it != cache.map.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t start = out.size();
  tokenize_segment(segment, out);
  cache.map.emplace(std::string(segment), std::vector<int32_t>(out.begin() + start, out.end()));
}

void BpeModel::tokenize_segment(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::vector<Symbol> symbols;  // scratch reused across calls: no allocation
  symbols.clear();
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, -1, kNoMerge, -1, true});
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
    if (bytes_available(ch)) {
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

namespace {

// A 4-ary min-heap of packed (rank << 32 | position) candidates over a reused buffer: half
// the depth of a binary heap, and the four children of a node share a cache line.
class CandidateHeap {
 public:
  explicit CandidateHeap(std::vector<uint64_t>& storage) : v_(storage) { v_.clear(); }
  bool empty() const { return v_.empty(); }
  void push_unordered(uint64_t x) { v_.push_back(x); }
  void heapify() {
    for (size_t i = v_.size() / 4 + 1; i-- > 0;) sift_down(i);
  }
  void push(uint64_t x) {
    size_t i = v_.size();
    v_.push_back(x);
    while (i > 0) {
      const size_t parent = (i - 1) / 4;
      if (v_[parent] <= x) break;
      v_[i] = v_[parent];
      i = parent;
    }
    v_[i] = x;
  }
  uint64_t pop() {
    const uint64_t top = v_[0];
    v_[0] = v_.back();
    v_.pop_back();
    if (!v_.empty()) sift_down(0);
    return top;
  }

 private:
  void sift_down(size_t i) {
    const size_t n = v_.size();
    if (i >= n) return;
    const uint64_t x = v_[i];
    for (;;) {
      const size_t first = 4 * i + 1;
      if (first >= n) break;
      size_t best = first;
      const size_t last = std::min(first + 4, n);
      for (size_t c = first + 1; c < last; ++c) {
        if (v_[c] < v_[best]) best = c;
      }
      if (v_[best] >= x) break;
      v_[i] = v_[best];
      i = best;
    }
    v_[i] = x;
  }
  std::vector<uint64_t>& v_;
};

// Below this many symbols a linear scan for the best candidate beats the heap.
constexpr size_t kScanMaxSymbols = 48;

}  // namespace

void BpeModel::apply_merges(std::vector<Symbol>& symbols) const {
  // The next merge is the live candidate with the lowest (rank, position): tokenizers' Merge
  // ordering. Each symbol holds the candidate for (itself, its right neighbour). A symbol's
  // pair never comes back once it changes (pieces only grow), so for heap entries "the rank
  // still queued on this symbol" is an exact staleness test and needs no second lookup.
  auto requeue = [&](size_t pos) {
    Symbol& l = symbols[pos];
    const MergeHit* m =
        l.next < 0 ? nullptr : merges_.find(l.id, symbols[static_cast<size_t>(l.next)].id);
    l.queued_rank = m ? m->rank : kNoMerge;
    l.queued_merged = m ? m->merged : -1;
  };
  auto merge_at = [&](size_t pos) {
    Symbol& left = symbols[pos];
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    left.id = left.queued_merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = static_cast<int32_t>(pos);
  };
  for (size_t pos = 0; pos < symbols.size(); ++pos) requeue(pos);

  if (symbols.size() <= kScanMaxSymbols) {
    for (;;) {
      size_t best = 0;
      uint32_t best_rank = kNoMerge;
      for (size_t pos = 0; pos < symbols.size(); ++pos) {
        if (symbols[pos].alive && symbols[pos].queued_rank < best_rank) {
          best_rank = symbols[pos].queued_rank;
          best = pos;
        }
      }
      if (best_rank == kNoMerge) return;
      merge_at(best);
      if (symbols[best].prev >= 0) requeue(static_cast<size_t>(symbols[best].prev));
      requeue(best);
    }
  }

  thread_local std::vector<uint64_t> storage;
  CandidateHeap heap(storage);
  auto pack = [](uint32_t rank, size_t pos) { return (static_cast<uint64_t>(rank) << 32) | pos; };
  for (size_t pos = 0; pos < symbols.size(); ++pos) {
    if (symbols[pos].queued_rank != kNoMerge)
      heap.push_unordered(pack(symbols[pos].queued_rank, pos));
  }
  heap.heapify();
  auto requeue_push = [&](size_t pos) {
    requeue(pos);
    if (symbols[pos].queued_rank != kNoMerge) heap.push(pack(symbols[pos].queued_rank, pos));
  };
  while (!heap.empty()) {
    const uint64_t top = heap.pop();
    const auto rank = static_cast<uint32_t>(top >> 32);
    const auto pos = static_cast<size_t>(top & 0xFFFFFFFFu);
    if (!symbols[pos].alive || symbols[pos].queued_rank != rank) continue;  // stale
    merge_at(pos);
    if (symbols[pos].prev >= 0) requeue_push(static_cast<size_t>(symbols[pos].prev));
    requeue_push(pos);
  }
}

}  // namespace mixserve::tokenizer_detail
