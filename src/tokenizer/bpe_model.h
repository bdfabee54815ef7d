// BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE", ...}) as used by the
// Llama / Mistral / Mixtral family: characters are the initial symbols (with byte fallback to
// <0xXX> tokens for characters outside the vocabulary), then ranked merges are applied lowest
// rank first, ties broken leftmost first, exactly as tokenizers' Word::merge_all does.
//
// Internal to src/tokenizer/; users go through Tokenizer (tokenizer.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mixserve::tokenizer_detail {

// One merge: (left id, right id) -> (rank, id of the merged piece).
struct MergeRule {
  int32_t left, right;
  uint32_t rank;
  int32_t merged;
};
struct MergeHit {
  uint32_t rank;
  int32_t merged;
};

// Open-addressing hash map from a (left, right) id pair to its merge. Read-only after build.
class MergeTable {
 public:
  void build(const std::vector<MergeRule>& rules);  // a later duplicate pair wins, as in HF
  // nullptr when the pair has no merge.
  const MergeHit* find(int32_t left, int32_t right) const {
    const uint64_t key = pack(left, right);
    for (size_t slot = hash(key);; slot = (slot + 1) & mask_) {
      const Slot& s = slots_[slot];
      if (s.key == key) return &s.hit;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return count_; }

 private:
  static uint64_t pack(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  size_t hash(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }

  // 16-byte slots holding the result: a lookup touches one cache line.
  struct Slot {
    uint64_t key;
    MergeHit hit;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are non-negative: never a real key
  std::vector<Slot> slots_;
  size_t count_ = 0;
  size_t mask_ = 0;
  int shift_ = 64;
};

// Set of (codepoint, codepoint) pairs: the adjacent characters found inside merged pieces.
class CharPairSet {
 public:
  void insert(uint32_t a, uint32_t b);
  bool contains(uint32_t a, uint32_t b) const {
    const int ia = small_index(a), ib = small_index(b);
    if (ia >= 0 && ib >= 0) {
      const size_t bit = static_cast<size_t>(ia) * kSmall + static_cast<size_t>(ib);
      return (small_[bit / 64] >> (bit % 64)) & 1;
    }
    if (slots_.empty()) return false;
    const uint64_t key = (static_cast<uint64_t>(a) << 32) | b;
    for (size_t slot = (key * 0x9E3779B97F4A7C15ull) >> shift_;; slot = (slot + 1) & mask_) {
      if (slots_[slot] == key) return true;
      if (slots_[slot] == kEmpty) return false;
    }
  }

 private:
  // ASCII and U+2581 (SentencePiece's space) use a bitmap: English text never hashes.
  static constexpr size_t kSmall = 129;
  static int small_index(uint32_t cp) {
    return cp < 128 ? static_cast<int>(cp) : cp == 0x2581 ? 128 : -1;
  }
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  void grow();
  uint64_t small_[(kSmall * kSmall + 63) / 64] = {};
  std::vector<uint64_t> slots_;
  size_t count_ = 0, mask_ = 0;
  int shift_ = 64;
};

struct BpeOptions {
  std::string unk_token;  // "" = none: unknown characters are dropped (as HF does)
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;  // a word that is itself in the vocab is one token
};

class BpeModel {
 public:
  // vocab: piece -> id. merges: pairs of pieces in priority order. `where` prefixes errors
  // (e.g. "tokenizer.json: model").
  BpeModel(std::unordered_map<std::string, int32_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& where);

  // Appends the ids of one pre-tokenized word (valid or invalid UTF-8) to `out`.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  int32_t id_of(std::string_view piece) const;                             // -1 if absent
  const std::vector<std::string>& pieces() const { return id_to_piece_; }  // by id ("" = hole)
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Symbol {
    int32_t id;
    int32_t prev, next;     // -1 at the ends
    uint32_t queued_rank;   // rank of the live candidate (this, next); kNoMerge if none
    int32_t queued_merged;  // what that candidate merges into
    bool alive;
  };
  static constexpr uint32_t kNoMerge = ~uint32_t{0};
  int32_t char_id(std::string_view ch, uint32_t codepoint) const;
  bool bytes_available(std::string_view ch) const;  // byte fallback can spell this character
  void apply_merges(std::vector<Symbol>& symbols) const;
  void build_barriers(const std::vector<MergeRule>& rules);

  // No merged piece contains characters a then b (and no merge involves a byte-fallback or
  // unknown token): then no token can ever span a boundary between a and b, BPE on each side
  // is independent, and a long word is cut there. With no pre-tokenizer (Mixtral) this turns
  // a whole document from one giant word into ordinary words, with identical output.
  // Characters outside the vocabulary: byte-fallback ones never merge; unknown ones stay
  // together so that fuse_unk can join a run of them.
  bool barrier(uint32_t a, uint32_t b) const {
    if (a == kUnkChar && b == kUnkChar) return false;
    return a >= kByteChar || b >= kByteChar || !joinable_.contains(a, b);
  }
  void tokenize_segment(std::string_view segment, std::vector<int32_t>& out) const;
  void cached_segment(std::string_view segment, std::vector<int32_t>& out) const;
  static constexpr uint32_t kNoChar = ~uint32_t{0};   // before the first character
  static constexpr uint32_t kUnkChar = kNoChar - 1;   // not in the vocab, becomes <unk>
  static constexpr uint32_t kByteChar = kNoChar - 2;  // not in the vocab, becomes <0xXX>s
  CharPairSet joinable_;
  bool use_barriers_ = false;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_piece_;
  std::vector<int32_t> codepoint_id_;  // single-character pieces below kDirectCodepoints
  static constexpr uint32_t kDirectCodepoints = 0x30000;
  int32_t byte_ids_[256];  // <0xXX> ids, -1 if absent
  MergeTable merges_;
  BpeOptions options_;
  int32_t unk_id_ = -1;
  uint64_t serial_;  // distinguishes models in the per-thread segment cache
};

// Decodes one UTF-8 character at s[i]; returns its length (1 for an invalid byte, with
// codepoint set to 0xFFFFFFFF so it is never found in the vocabulary).
size_t next_utf8_char(std::string_view s, size_t i, uint32_t& codepoint);

}  // namespace mixserve::tokenizer_detail
