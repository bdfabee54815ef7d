// Tokenizer: Hugging Face tokenizer.json (BPE of the Llama/Mistral family) plus
// tokenizer_config.json / generation_config.json for BOS, EOS, add_bos_token and the chat
// template. Encoding and decoding match transformers' (slow-path-free) fast tokenizer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mixserve {

class Tokenizer {
 public:
  // Loads <dir>/tokenizer.json and, when present, tokenizer_config.json and
  // generation_config.json. Errors name the file and the field.
  static std::shared_ptr<const Tokenizer> from_dir(const std::filesystem::path& dir);
  static std::shared_ptr<const Tokenizer> from_json(const std::string& tokenizer_json,
                                                    const std::string& tokenizer_config_json = "{}");
  virtual ~Tokenizer() = default;

  // add_special_tokens: prepend BOS when the config says add_bos_token (as HF's encode does).
  // Literal special-token text in `text` (e.g. "<s>") is parsed as that special token, as
  // transformers does by default.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const = 0;
  virtual std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;                      // -1 if none
  virtual const std::vector<int32_t>& eos_ids() const = 0;  // from generation_config / config
  virtual bool is_special(int32_t id) const = 0;
  virtual std::string_view id_to_piece(int32_t id) const = 0;  // raw vocabulary string
  virtual const std::string& chat_template() const = 0;         // "" if none
  virtual const std::string& bos_token() const = 0;
  virtual const std::string& eos_token() const = 0;
};

// Streams text for a growing list of generated ids. push() returns the text that is now
// final: never a partial UTF-8 character (byte-fallback tokens span ids), with the leading
// space rule of SentencePiece handled as decode() handles it given the prompt as context.
// Concatenating every push() and finish() equals decode(generated ids).
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(std::shared_ptr<const Tokenizer> tokenizer,
                         std::span<const int32_t> prompt_ids, bool skip_special_tokens = true);
  std::string push(int32_t id);
  std::string finish();  // whatever is held back (an incomplete UTF-8 tail becomes U+FFFD)

 private:
  std::shared_ptr<const Tokenizer> tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // a few context ids from the prompt, then the generated ids
  size_t prefix_offset_ = 0;  // ids_[prefix_offset_, read_offset_) already emitted as text
  size_t read_offset_ = 0;
};

}  // namespace mixserve
