// Encoding: added tokens are cut out of the raw text first; each remaining piece is
// normalized, cut again at normalized added tokens, pre-tokenized into words, and each word
// goes through BPE. Decoding maps ids to pieces and runs the decoder chain.
#include "tokenizer/hf_tokenizer.h"

#include <algorithm>

namespace mixserve::tokenizer_detail {
namespace {

std::vector<AddedToken> select(const std::vector<AddedToken>& all, bool normalized) {
  std::vector<AddedToken> out;
  for (const AddedToken& t : all) {
    if (t.normalized == normalized) out.push_back(t);
  }
  return out;
}

}  // namespace

HfTokenizer::HfTokenizer(HfTokenizerSpec spec)
    : spec_(std::move(spec)),
      raw_matcher_(select(spec_.added_tokens, false)),
      normalized_matcher_(select(spec_.added_tokens, true)) {
  pieces_ = spec_.model->pieces();
  for (const AddedToken& t : spec_.added_tokens) {
    if (static_cast<size_t>(t.id) >= pieces_.size()) pieces_.resize(static_cast<size_t>(t.id) + 1);
  }
  known_.assign(pieces_.size(), false);
  special_.assign(pieces_.size(), false);
  for (size_t id = 0; id < spec_.model->pieces().size(); ++id) {
    known_[id] = !spec_.model->pieces()[id].empty();
  }
  for (const AddedToken& t : spec_.added_tokens) {
    const auto id = static_cast<size_t>(t.id);
    pieces_[id] = t.content;
    known_[id] = true;
    special_[id] = t.special;
  }
  if (!spec_.bos_token.empty()) bos_id_ = token_id(spec_.bos_token);
}

int32_t HfTokenizer::token_id(std::string_view piece) const {
  for (const AddedToken& t : spec_.added_tokens) {
    if (t.content == piece) return t.id;
  }
  return spec_.model->id_of(piece);
}

void HfTokenizer::encode_plain(std::string_view text, bool at_text_start,
                               std::vector<int32_t>& out) const {
  std::string normalized(text);
  normalize(spec_.normalizer, normalized);
  std::vector<std::pair<size_t, size_t>> words;
  for (const Segment& seg : normalized_matcher_.split(normalized)) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    std::string piece = normalized.substr(seg.begin, seg.end - seg.begin);
    words.clear();
    spec_.pre_tokenizer.apply(piece, at_text_start && seg.begin == 0, words);
    for (const auto& [begin, end] : words) {
      spec_.model->tokenize(std::string_view(piece).substr(begin, end - begin), out);
    }
  }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = spec_.prefix_ids;
  for (const Segment& seg : raw_matcher_.split(text)) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
    } else {
      encode_plain(text.substr(seg.begin, seg.end - seg.begin), seg.begin == 0, ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), spec_.suffix_ids.begin(), spec_.suffix_ids.end());
  return ids;
}

std::string HfTokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    // Unknown ids are dropped, as tokenizers' decode does.
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size() || !known_[static_cast<size_t>(id)]) {
      continue;
    }
    if (skip_special_tokens && special_[static_cast<size_t>(id)]) continue;
    tokens.push_back(pieces_[static_cast<size_t>(id)]);
  }
  std::string text;
  if (spec_.decoder_null) {
    for (size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
  } else {
    text = run_decoder(spec_.decoder, std::move(tokens));
  }
  return spec_.clean_up_tokenization_spaces ? clean_up_tokenization(std::move(text)) : text;
}

std::string clean_up_tokenization(std::string text) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) replace_all(text, from, to);
  return text;
}

}  // namespace mixserve::tokenizer_detail
