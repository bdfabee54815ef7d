#include "tokenizer/transformers_llama.h"

namespace mixserve::tokenizer_detail {

bool is_transformers_llama_class(std::string_view tokenizer_class) {
  return tokenizer_class == "LlamaTokenizer" || tokenizer_class == "LlamaTokenizerFast";
}

TransformersLlamaSteps transformers_llama_steps(std::optional<bool> legacy,
                                                std::optional<bool> add_prefix_space) {
  const std::string kSpace = "\xE2\x96\x81";  // U+2581
  const bool prefix = add_prefix_space.value_or(true);
  TransformersLlamaSteps steps;
  steps.pre_tokenizer.metaspace = true;
  steps.pre_tokenizer.replacement = kSpace;
  steps.pre_tokenizer.split = false;
  steps.pre_tokenizer.prepend = !prefix                  ? PreTokenizer::Prepend::kNever
                                : legacy.value_or(false) ? PreTokenizer::Prepend::kAlways
                                                         : PreTokenizer::Prepend::kFirst;
  DecoderStep replace{DecoderStep::Kind::kReplace};
  replace.pattern = kSpace;
  replace.content = " ";
  steps.decoder = {replace, DecoderStep{DecoderStep::Kind::kByteFallback},
                   DecoderStep{DecoderStep::Kind::kFuse}};
  if (prefix) {  // the space the pre-tokenizer put in front of the text
    DecoderStep strip{DecoderStep::Kind::kStrip};
    strip.content = " ";
    strip.start = 1;
    steps.decoder.push_back(strip);
  }
  return steps;
}

}  // namespace mixserve::tokenizer_detail
