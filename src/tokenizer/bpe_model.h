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

// Open-addressing hash map from a (left, right) id pair to its merge. Read-only after build.
class MergeTable {
 public:
  void build(const std::vector<MergeRule>& rules);  // a later duplicate pair wins, as in HF
  // nullptr when the pair has no merge.
  const MergeRule* find(int32_t left, int32_t right) const {
    const uint64_t key = pack(left, right);
    for (size_t slot = hash(key);; slot = (slot + 1) & mask_) {
      const int32_t idx = slots_[slot];
      if (idx < 0) return nullptr;
      const MergeRule& r = rules_[static_cast<size_t>(idx)];
      if (r.left == left && r.right == right) return &r;
    }
  }
  size_t size() const { return rules_.size(); }

 private:
  static uint64_t pack(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  size_t hash(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }

  std::vector<MergeRule> rules_;
  std::vector<int32_t> slots_;  // index into rules_, -1 = empty
  size_t mask_ = 0;
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

  int32_t id_of(std::string_view piece) const;  // -1 if absent
  const std::vector<std::string>& pieces() const { return id_to_piece_; }  // by id ("" = hole)
  size_t merge_count() const { return merges_.size(); }

 private:
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // -1 at the ends
    bool alive;
  };
  int32_t char_id(std::string_view ch, uint32_t codepoint) const;
  void apply_merges(std::vector<Symbol>& symbols) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_piece_;
  std::vector<int32_t> codepoint_id_;  // single-character pieces below kDirectCodepoints
  static constexpr uint32_t kDirectCodepoints = 0x30000;
  int32_t byte_ids_[256];  // <0xXX> ids, -1 if absent
  MergeTable merges_;
  BpeOptions options_;
  int32_t unk_id_ = -1;
};

// Decodes one UTF-8 character at s[i]; returns its length (1 for an invalid byte, with
// codepoint set to 0xFFFFFFFF so it is never found in the vocabulary).
size_t next_utf8_char(std::string_view s, size_t i, uint32_t& codepoint);

}  // namespace mixserve::tokenizer_detail
