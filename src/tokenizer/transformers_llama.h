// The text pipeline transformers 5 runs for a Llama-class tokenizer_config.json
// ("tokenizer_class": "LlamaTokenizer" or "LlamaTokenizerFast", the Llama-2 / Mistral / Mixtral
// family). Its LlamaTokenizer (tokenizers backend) keeps only the vocabulary, merges and
// post-processor of tokenizer.json and installs its own steps: no normalizer, a Metaspace
// pre-tokenizer ("▁", split false) whose prepend scheme comes from the config's legacy and
// add_prefix_space, and a Replace / ByteFallback / Fuse (/ Strip) decoder. tokenizer.json on its
// own says normalizer Prepend("▁") + Replace(" " -> "▁"): the two differ where text starts with
// a space or follows a special token (see docs/tokenizer.md). Internal to src/tokenizer/.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "tokenizer/decoder.h"
#include "tokenizer/text_steps.h"

namespace mixserve::tokenizer_detail {

// True for the classes whose transformers 5 class replaces tokenizer.json's text steps.
// CodeLlamaTokenizer is not one: in transformers 5 it restores the Prepend + Replace
// normalizer, which is what tokenizer.json already says.
bool is_transformers_llama_class(std::string_view tokenizer_class);

struct TransformersLlamaSteps {
  PreTokenizer pre_tokenizer;
  std::vector<DecoderStep> decoder;
};

// legacy, add_prefix_space: the config's values, nullopt when absent (or null). transformers
// defaults them to false and true, so a config that says nothing gets prepend_scheme "first";
// "legacy": true gives "always"; "add_prefix_space": false gives "never" (and no Strip step).
TransformersLlamaSteps transformers_llama_steps(std::optional<bool> legacy,
                                                std::optional<bool> add_prefix_space);

}  // namespace mixserve::tokenizer_detail
