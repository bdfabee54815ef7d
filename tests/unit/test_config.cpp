#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "model/config.h"
#include "temp_dir.h"
#include "util/error.h"

namespace mixserve {
namespace {

// The config.json of Mixtral-8x7B as transformers 4 writes it.
const char* kClassicMixtral = R"({
  "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
  "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
  "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
  "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000})";

// The same model as transformers 5 writes it: dtype, rope_parameters, head_dim null.
const char* kTransformers5Mixtral = R"({
  "architectures": ["MixtralForCausalLM"], "bos_token_id": 1, "eos_token_id": [2, 32000],
  "dtype": "float16", "head_dim": null, "hidden_act": "silu", "hidden_size": 4096,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
  "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "num_local_experts": 8, "rms_norm_eps": 1e-05,
  "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}, "sliding_window": 4096,
  "tie_word_embeddings": false, "vocab_size": 32000})";

const char* kMistral = R"({
  "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
  "vocab_size": 32768, "rope_theta": 1000000.0, "torch_dtype": "bfloat16",
  "max_position_embeddings": 32768, "rms_norm_eps": 1e-05})";

ModelConfig parse(const std::string& text) { return ModelConfig::from_json_text(text, "config.json"); }

// Parses `text` and returns the error message (fails the test when nothing is thrown).
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << text;
  return "";
}

// kClassicMixtral with `key` removed or replaced by `"key": value`.
std::string with(const std::string& key, const std::string& value) {
  std::string text = kClassicMixtral;
  const std::string needle = "\"" + key + "\": ";
  const size_t at = text.find(needle);
  EXPECT_NE(at, std::string::npos) << key;
  size_t end = text.find_first_of(",}", at);
  if (value.empty()) {
    if (text[end] == ',') return text.erase(at, end + 1 - at);
    const size_t comma = text.rfind(',', at);  // last key: drop the comma before it
    return text.erase(comma, end - comma);
  }
  return text.replace(at, end - at, needle + value);
}

TEST(Config, ParsesClassicMixtral) {
  const ModelConfig c = parse(kClassicMixtral);
  EXPECT_EQ(c.model_type, "mixtral");
  EXPECT_TRUE(c.moe);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 14336);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_local_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_FALSE(c.fp8);
}

TEST(Config, ParsesTransformers5Keys) {
  const ModelConfig c = parse(kTransformers5Mixtral);
  EXPECT_EQ(c.head_dim, 128);  // null → hidden / heads
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e5);
  EXPECT_EQ(c.dtype, "float16");
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{2, 32000}));
}

TEST(Config, DenseMistralIsOneExpert) {
  const ModelConfig c = parse(kMistral);
  EXPECT_FALSE(c.moe);
  EXPECT_EQ(c.num_local_experts, 1);
  EXPECT_EQ(c.num_experts_per_tok, 1);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.vocab_size, 32768);
  std::string llama = kMistral;
  llama.replace(llama.find("mistral"), 7, "llama");
  EXPECT_FALSE(parse(llama).moe);
}

TEST(Config, ExplicitHeadDimMayDifferFromHiddenOverHeads) {
  const ModelConfig c = parse(with("num_attention_heads", "24, \"head_dim\": 64"));
  EXPECT_EQ(c.head_dim, 64);  // 4096 % 24 != 0 is fine when head_dim is given
}

TEST(Config, Fp8QuantizationConfig) {
  const ModelConfig c = parse(with("use_cache", R"(true, "quantization_config":
      {"quant_method": "fp8", "activation_scheme": "static"})"));
  EXPECT_TRUE(c.fp8);
  EXPECT_EQ(c.fp8_activation_scheme, "static");
  EXPECT_NE(error_of(with("use_cache", R"(true, "quantization_config": {"quant_method": "awq"})"))
                .find("quantization_config.quant_method"),
            std::string::npos);
}

TEST(Config, MissingFieldsNameFieldAndFile) {
  const char* required[] = {"vocab_size", "hidden_size", "intermediate_size",
                            "num_hidden_layers", "num_attention_heads", "num_experts_per_tok"};
  for (const char* key : required) {
    const std::string msg = error_of(with(key, ""));
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string(key) + " missing"), std::string::npos) << msg;
  }
  EXPECT_EQ(error_of(with("num_local_experts", "")),
            "config.json: num_local_experts missing (is this a Mixtral checkpoint?)");
  EXPECT_NE(error_of(with("model_type", "")).find("model_type missing"), std::string::npos);
}

TEST(Config, InconsistentFieldsAreRejected) {
  struct Case {
    std::string key, value, expect;
  };
  const Case cases[] = {
      {"num_attention_heads", "24", "hidden_size (4096) must be a multiple of num_attention_heads"},
      {"num_key_value_heads", "5", "num_attention_heads (32) must be a multiple"},
      {"num_experts_per_tok", "9", "num_experts_per_tok (9) exceeds num_local_experts (8)"},
      {"hidden_size", "0", "hidden_size must be positive"},
      {"num_hidden_layers", "-2", "num_hidden_layers must be positive"},
      {"vocab_size", "\"32000\"", "vocab_size must be an integer"},
      {"intermediate_size", "14336.5", "intermediate_size must be an integer"},
      {"tie_word_embeddings", "1", "tie_word_embeddings must be true or false"},
      {"rope_theta", "\"big\"", "rope_theta must be a number"},
      {"model_type", "\"qwen2_moe\"", "model_type \"qwen2_moe\" is not supported"},
      {"torch_dtype", "\"int8\"", "torch_dtype \"int8\" is not supported"},
      {"eos_token_id", "[2, \"x\"]", "eos_token_id must be an integer"},
      {"use_cache", R"(true, "rope_scaling": {"rope_type": "yarn", "factor": 4.0})",
       "rope_scaling.rope_type = \"yarn\" is not supported"},
      {"use_cache", R"(true, "rope_scaling": {"type": "linear", "factor": 2.0})",
       "rope_scaling.type = \"linear\" is not supported"},
      {"hidden_act", "\"gelu\"", "hidden_act \"gelu\" is not supported"},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of(with(c.key, c.value));
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.key << ": " << msg;
    EXPECT_EQ(msg.rfind("config.json: ", 0), 0u) << msg;
  }
  EXPECT_NE(error_of("{not json").find("config.json: not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("JSON object"), std::string::npos);
  std::string t5 = kTransformers5Mixtral;
  t5.replace(t5.find("\"default\""), 9, "\"llama3\"");
  EXPECT_NE(error_of(t5).find("rope_parameters.rope_type"), std::string::npos);
}

TEST(Config, RopeScalingNullIsPlainRope) {
  EXPECT_NO_THROW(parse(with("use_cache", R"(true, "rope_scaling": null)")));
}

TEST(Config, WriteThenReadRoundTrips) {
  for (const char* text : {kClassicMixtral, kTransformers5Mixtral, kMistral}) {
    ModelConfig a = parse(text);
    a.fp8 = a.moe;
    a.fp8_activation_scheme = a.moe ? "dynamic" : "";
    const ModelConfig b = parse(a.to_json_text());
    EXPECT_EQ(b.model_type, a.model_type);
    EXPECT_EQ(b.moe, a.moe);
    EXPECT_EQ(b.hidden_size, a.hidden_size);
    EXPECT_EQ(b.head_dim, a.head_dim);
    EXPECT_EQ(b.num_local_experts, a.num_local_experts);
    EXPECT_EQ(b.num_experts_per_tok, a.num_experts_per_tok);
    EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
    EXPECT_EQ(b.rope_theta, a.rope_theta);
    EXPECT_EQ(b.sliding_window, a.sliding_window);
    EXPECT_EQ(b.dtype, a.dtype);
    EXPECT_EQ(b.eos_token_ids, a.eos_token_ids);
    EXPECT_EQ(b.max_position_embeddings, a.max_position_embeddings);
    EXPECT_EQ(b.fp8, a.fp8);
  }
  const std::string text = parse(kClassicMixtral).to_json_text();
  EXPECT_NE(text.find("\"architectures\": [\n    \"MixtralForCausalLM\""), std::string::npos);
  EXPECT_NE(text.find("\"rms_norm_eps\": 1e-05"), std::string::npos);
  EXPECT_NE(text.find("\"sliding_window\": null"), std::string::npos);
  EXPECT_NE(text.find("\"router_aux_loss_coef\": 0.02"), std::string::npos);
  EXPECT_NE(text.find("\"output_router_logits\": false"), std::string::npos);
  EXPECT_NE(parse(kMistral).to_json_text().find("MistralForCausalLM"), std::string::npos);
}

TEST(Config, FromFileNamesThePath) {
  const testing::TempDir dir("config");
  const auto path = dir / "config.json";
  std::ofstream(path) << with("hidden_size", "");
  try {
    ModelConfig::from_file(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ": hidden_size missing"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(ModelConfig::from_file(dir / "nope.json"), Error);
}

}  // namespace
}  // namespace mixserve
