// The Tokenizer implementation for tokenizer.json BPE files (see tokenizer.h). The loader
// (tokenizer_json.cpp) fills HfTokenizerSpec; HfTokenizer runs it. Internal to src/tokenizer/.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/text_steps.h"
#include "tokenizer/tokenizer.h"

namespace mixserve::tokenizer_detail {

struct HfTokenizerSpec {
  std::unique_ptr<BpeModel> model;
  std::vector<AddedToken> added_tokens;
  std::vector<NormalizerStep> normalizer;
  PreTokenizer pre_tokenizer;
  std::vector<DecoderStep> decoder;
  bool decoder_null = false;  // "decoder": null -> tokens joined with spaces, as tokenizers does
  // What encode(add_special_tokens=true) puts around the text.
  std::vector<int32_t> prefix_ids, suffix_ids;
  bool clean_up_tokenization_spaces = false;
  std::string bos_token, eos_token, chat_template;
  std::vector<int32_t> eos_ids;
};

class HfTokenizer final : public Tokenizer {
 public:
  explicit HfTokenizer(HfTokenizerSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t bos_id() const override { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const override { return spec_.eos_ids; }
  bool is_special(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < special_.size() &&
           special_[static_cast<size_t>(id)];
  }
  std::string_view id_to_piece(int32_t id) const override {
    return id >= 0 && static_cast<size_t>(id) < pieces_.size() ? pieces_[static_cast<size_t>(id)]
                                                               : std::string_view();
  }
  const std::string& chat_template() const override { return spec_.chat_template; }
  const std::string& bos_token() const override { return spec_.bos_token; }
  const std::string& eos_token() const override { return spec_.eos_token; }

  int32_t token_id(std::string_view piece) const;  // vocab or added token, -1 if absent

 private:
  void encode_plain(std::string_view text, bool at_text_start, std::vector<int32_t>& out) const;

  HfTokenizerSpec spec_;
  AddedTokenMatcher raw_matcher_, normalized_matcher_;
  std::vector<std::string> pieces_;  // by id: vocab pieces, then added tokens' content
  std::vector<bool> special_, known_;
  int32_t bos_id_ = -1;
};

// Transformers' clean_up_tokenization (" ." -> "." and the like), for configs that ask for it.
std::string clean_up_tokenization(std::string text);

}  // namespace mixserve::tokenizer_detail
