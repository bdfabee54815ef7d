// Streaming detokenization (vLLM's prefix_offset / read_offset scheme). Text for the window
// ids_[prefix_offset_, read_offset_) has been emitted; a push decodes ids_[prefix_offset_, end)
// and emits what extends decode(ids_[prefix_offset_, read_offset_)). Decoding from a few tokens
// of left context, not from the start of the window, keeps each step O(window) and keeps the
// SentencePiece leading-space rule right: the context's first token absorbs the stripped space.
//
// Text is emitted only when the newest id is a token the decoder treats as a boundary (not a
// <0xXX> byte piece, not a skipped special token). Until then the bytes of a run may still
// change meaning: tokenizers' ByteFallback turns a whole run into U+FFFD per byte if any part
// of it is invalid UTF-8, so emitting a run's first valid bytes early could disagree with
// decode() of the whole list. Holding the run keeps the stream exactly equal to it.
#include "tokenizer/decoder.h"
#include "tokenizer/tokenizer.h"

namespace mixserve {
namespace {

// Left-context tokens kept from the prompt (vLLM uses 5).
constexpr size_t kContextTokens = 5;

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(std::shared_ptr<const Tokenizer> tokenizer,
                                               std::span<const int32_t> prompt_ids,
                                               bool skip_special_tokens)
    : tok_(std::move(tokenizer)), skip_special_(skip_special_tokens) {
  const size_t keep = std::min(prompt_ids.size(), kContextTokens);
  ids_.assign(prompt_ids.end() - static_cast<std::ptrdiff_t>(keep), prompt_ids.end());
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
}

std::string IncrementalDetokenizer::push(int32_t id) {
  ids_.push_back(id);
  const bool boundary = id >= 0 && id < tok_->vocab_size() &&
                        !(skip_special_ && tok_->is_special(id)) &&
                        tokenizer_detail::byte_fallback_value(tok_->id_to_piece(id)) < 0;
  if (!boundary) return "";
  const std::span<const int32_t> all(ids_);
  const std::string prefix =
      tok_->decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_);
  const std::string text = tok_->decode(all.subspan(prefix_offset_), skip_special_);
  if (text.size() <= prefix.size() || text.compare(0, prefix.size(), prefix) != 0) return "";
  std::string out = text.substr(prefix.size());
  // Drop the context we no longer need so the window stays a few tokens long.
  ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(read_offset_));
  prefix_offset_ = 0;
  read_offset_ = ids_.size();
  return out;
}

std::string IncrementalDetokenizer::finish() {
  if (read_offset_ >= ids_.size()) return "";
  const std::span<const int32_t> all(ids_);
  const std::string prefix =
      tok_->decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_);
  const std::string text = tok_->decode(all.subspan(prefix_offset_), skip_special_);
  read_offset_ = ids_.size();
  if (text.size() <= prefix.size() || text.compare(0, prefix.size(), prefix) != 0) return "";
  return text.substr(prefix.size());
}

}  // namespace mixserve
