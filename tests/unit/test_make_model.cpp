// make-model: deterministic bytes, sharding that does not change the weights, the scales the
// golden tests rely on, presets and their overrides, and the CLI.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "model/loader.h"
#include "model/make_model.h"
#include "model/presets.h"
#include "model/weight_names.h"
#include "temp_dir.h"
#include "util/error.h"

namespace mixserve {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class MakeModel : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(tok_ / "tokenizer.json") << R"({"model": {"type": "BPE"}})";
    std::ofstream(tok_ / "tokenizer_config.json") << R"({"add_bos_token": true})";
  }
  MadeModel make(const fs::path& out, const std::string& preset = "tiny", int shards = 1,
                 uint64_t seed = 0, DType dtype = DType::kBF16) {
    MakeModelOptions o;
    o.preset = preset;
    o.out = out;
    o.shards = shards;
    o.seed = seed;
    o.dtype = dtype;
    o.tokenizer_dir = tok_.path();
    return make_model(o);
  }
  TempDir tok_{"tok"}, dir_{"mm"};
};

TEST_F(MakeModel, WritesALoadableFolder) {
  const MadeModel m = make(dir_ / "a");
  EXPECT_EQ(m.weight_files, std::vector<fs::path>{dir_ / "a" / "model.safetensors"});
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json",
                        "tokenizer_config.json", "model.safetensors"}) {
    EXPECT_TRUE(fs::exists(dir_ / "a" / f)) << f;
  }
  EXPECT_EQ(read_file(dir_ / "a" / "tokenizer_config.json"), R"({"add_bos_token": true})");
  EXPECT_NE(read_file(dir_ / "a" / "generation_config.json").find("\"eos_token_id\": 2"),
            std::string::npos);
  const ModelFiles files = open_model_dir(dir_ / "a");
  const ModelConfig& c = files.config;
  EXPECT_EQ(c.model_type, "mixtral");
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.num_key_value_heads, 1);
  EXPECT_EQ(c.num_local_experts, 4);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(files.checkpoint->find(weight_names::embed())->dtype, DType::kBF16);
  EXPECT_EQ(files.checkpoint->names().size(), expected_tensors(c).size());
}

TEST_F(MakeModel, SameSeedSameBytesOtherSeedDiffers) {
  make(dir_ / "a", "tiny", 1, 7);
  make(dir_ / "b", "tiny", 1, 7);
  make(dir_ / "c", "tiny", 1, 8);
  const std::string a = read_file(dir_ / "a" / "model.safetensors");
  EXPECT_EQ(a, read_file(dir_ / "b" / "model.safetensors"));
  EXPECT_EQ(read_file(dir_ / "a" / "config.json"), read_file(dir_ / "b" / "config.json"));
  const std::string c = read_file(dir_ / "c" / "model.safetensors");
  ASSERT_EQ(a.size(), c.size());
  EXPECT_NE(a, c);
}

TEST_F(MakeModel, ShardingDoesNotChangeTheWeights) {
  make(dir_ / "one", "tiny", 1, 3);
  const MadeModel three = make(dir_ / "three", "tiny", 3, 3);
  ASSERT_EQ(three.weight_files.size(), 3u);
  EXPECT_EQ(three.weight_files[2].filename(), "model-00003-of-00003.safetensors");
  const std::string index = read_file(dir_ / "three" / "model.safetensors.index.json");
  EXPECT_NE(index.find("\"total_size\": " + std::to_string(three.weight_bytes)),
            std::string::npos);
  EXPECT_NE(index.find("\"weight_map\""), std::string::npos);
  for (const fs::path& f : three.weight_files) {
    EXPECT_FALSE(SafetensorsFile::open(f)->tensors().empty()) << f;
  }
  const ModelFiles a = open_model_dir(dir_ / "one");
  const ModelFiles b = open_model_dir(dir_ / "three");
  ASSERT_EQ(a.checkpoint->names(), b.checkpoint->names());
  for (const std::string& name : a.checkpoint->names()) {
    const TensorView* x = a.checkpoint->find(name);
    const TensorView* y = b.checkpoint->find(name);
    ASSERT_EQ(x->nbytes, y->nbytes) << name;
    EXPECT_EQ(std::memcmp(x->data, y->data, x->nbytes), 0) << name;
  }
  // Rewriting the sharded folder as one file removes the shards and the index.
  make(dir_ / "three", "tiny", 1, 3);
  EXPECT_FALSE(fs::exists(dir_ / "three" / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir_ / "three" / "model-00001-of-00003.safetensors"));
  EXPECT_EQ(read_file(dir_ / "three" / "model.safetensors"),
            read_file(dir_ / "one" / "model.safetensors"));
}

// Mean and standard deviation of a tensor, as float.
std::pair<double, double> moments(const TensorView& v) {
  std::vector<float> x(static_cast<size_t>(v.numel()));
  v.to_float(x.data());
  double s = 0, s2 = 0;
  for (float f : x) s += f;
  const double mean = s / x.size();
  for (float f : x) s2 += (f - mean) * (f - mean);
  return {mean, std::sqrt(s2 / x.size())};
}

TEST_F(MakeModel, WeightScalesFollowTheDocumentedGains) {
  make(dir_ / "a", "tiny", 1, 0, DType::kF32);
  const ModelFiles m = open_model_dir(dir_ / "a");
  const auto& ck = *m.checkpoint;
  // Within 4 standard errors (uniform: the sample std has relative error sqrt(0.2 / n)).
  auto expect_std = [&](const std::string& name, double mean, double std_dev) {
    const TensorView& v = *ck.find(name);
    const double n = static_cast<double>(v.numel());
    const auto [mu, sd] = moments(v);
    EXPECT_NEAR(mu, mean, 4 * std_dev / std::sqrt(n)) << name;
    EXPECT_NEAR(sd, std_dev, 4 * std_dev * std::sqrt(0.2 / n)) << name;
  };
  expect_std(weight_names::embed(), 0, 1.0);
  expect_std(weight_names::q_proj(0), 0, 1 / std::sqrt(128.0));
  expect_std(weight_names::expert_down(m.config, 1, 3), 0, 1 / std::sqrt(256.0));
  expect_std(weight_names::router(1), 0, 3 / std::sqrt(128.0));
  expect_std(weight_names::lm_head(), 0, 7 / std::sqrt(128.0));
  expect_std(weight_names::attn_norm(0), 1.0, 0.1 / std::sqrt(3.0));
  std::vector<float> norm(128);
  ck.find(weight_names::final_norm())->to_float(norm.data());
  for (float v : norm) ASSERT_TRUE(v >= 0.9f && v <= 1.1f) << v;
}

TEST_F(MakeModel, ValuesArePinned) {
  // Golden references depend on these exact values: a change here invalidates them.
  std::vector<float> v(4);
  synthetic_tensor_values({weight_names::attn_norm(0), {4}}, 0, v.data());
  for (float x : v) EXPECT_TRUE(x >= 0.9f && x <= 1.1f);
  std::vector<float> w(3);
  synthetic_tensor_values({weight_names::embed(), {1, 3}}, 0, w.data());
  std::vector<float> again(3);
  synthetic_tensor_values({weight_names::embed(), {1, 3}}, 0, again.data());
  EXPECT_EQ(w, again);
  synthetic_tensor_values({weight_names::embed(), {1, 3}}, 1, again.data());
  EXPECT_NE(w, again);
  // A tensor's first values do not depend on its size (counter-based generator).
  std::vector<float> longer(6);
  synthetic_tensor_values({weight_names::embed(), {2, 3}}, 0, longer.data());
  EXPECT_TRUE(std::equal(w.begin(), w.end(), longer.begin()));
}

TEST_F(MakeModel, F16AndF32Dtypes) {
  make(dir_ / "h", "tiny-dense?layers=1", 1, 0, DType::kF16);
  const ModelFiles m = open_model_dir(dir_ / "h");
  EXPECT_EQ(m.config.dtype, "float16");
  EXPECT_EQ(m.checkpoint->find(weight_names::lm_head())->dtype, DType::kF16);
  EXPECT_EQ(parse_weight_dtype("bf16"), DType::kBF16);
  EXPECT_EQ(parse_weight_dtype("float32"), DType::kF32);
  EXPECT_THROW(parse_weight_dtype("int8"), Error);
}

TEST_F(MakeModel, BadOptions) {
  EXPECT_THROW(make(dir_ / "x", "tiny", 0), Error);
  EXPECT_THROW(make(dir_ / "x", "tiny", 100000), Error);
  EXPECT_THROW(make(dir_ / "x", "huge"), Error);
  MakeModelOptions o;
  o.out = dir_ / "x";
  o.tokenizer_dir = dir_ / "no-tokenizer";
  try {
    make_model(o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json: missing"), std::string::npos);
  }
}

TEST(Presets, ShapesAsDocumented) {
  const ModelConfig tiny = preset_config("tiny");
  EXPECT_EQ(tiny.num_attention_heads / tiny.num_key_value_heads, 4);
  EXPECT_EQ(tiny.head_dim, 32);
  EXPECT_EQ(tiny.vocab_size, 32000);
  EXPECT_EQ(tiny.max_position_embeddings, 4096);
  const ModelConfig d128 = preset_config("tiny-d128");
  EXPECT_EQ(d128.head_dim, 128);
  EXPECT_NE(d128.head_dim * d128.num_attention_heads, d128.hidden_size);
  const ModelConfig e8 = preset_config("tiny-e8");
  EXPECT_EQ(e8.num_local_experts, 8);
  EXPECT_EQ(e8.intermediate_size, 192);
  const ModelConfig dense = preset_config("tiny-dense");
  EXPECT_FALSE(dense.moe);
  EXPECT_EQ(dense.model_type, "mistral");
  const ModelConfig big = preset_config("mixtral-8x22b");
  EXPECT_EQ(big.num_hidden_layers, 56);
  EXPECT_EQ(big.vocab_size, 32768);
  EXPECT_EQ(preset_config("mixtral-8x7b").intermediate_size, 14336);
  EXPECT_FALSE(preset_config("mistral-7b").moe);
  // Every preset passes config.json validation.
  for (const std::string& name : preset_names()) {
    const ModelConfig c = preset_config(name);
    const ModelConfig back = ModelConfig::from_json_text(c.to_json_text(), name);
    EXPECT_EQ(back.head_dim, c.head_dim) << name;
    EXPECT_EQ(back.num_local_experts, c.num_local_experts) << name;
  }
}

TEST(Presets, SpecOverrides) {
  const ModelConfig c = preset_from_spec("mixtral-8x7b?layers=4&experts=16&top_k=4");
  EXPECT_EQ(c.num_hidden_layers, 4);
  EXPECT_EQ(c.num_local_experts, 16);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(preset_from_spec("tiny").num_hidden_layers, 2);

  auto message = [](const std::string& spec) -> std::string {
    try {
      preset_from_spec(spec);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message("mixtral-9x9b").find("valid: tiny, tiny-e8"), std::string::npos);
  EXPECT_NE(message("tiny?layer=3").find("unknown key \"layer\" (valid: "), std::string::npos);
  EXPECT_NE(message("tiny?layers=x").find("layers needs an integer"), std::string::npos);
  EXPECT_NE(message("tiny?layers=").find("layers needs an integer"), std::string::npos);
  EXPECT_NE(message("tiny?layers=0").find("num_hidden_layers must be positive"),
            std::string::npos);
  EXPECT_NE(message("tiny?top_k=5").find("exceeds num_local_experts"), std::string::npos);
  EXPECT_NE(message("tiny?kv_heads=3").find("multiple of num_key_value_heads"), std::string::npos);
  EXPECT_NE(message("tiny-dense?experts=8").find("MoE presets only"), std::string::npos);
}

TEST_F(MakeModel, CommandLine) {
  const fs::path out = dir_ / "cli";
  const std::string cmd = std::string(MIXSERVE_BINARY) + " make-model --preset tiny-e8 --out '" +
                          out.string() + "' --shards 2 --dtype f32 --seed 5 --tokenizer-dir '" +
                          tok_.path().string() + "' > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const ModelFiles m = open_model_dir(out);
  EXPECT_EQ(m.config.num_local_experts, 8);
  EXPECT_EQ(m.checkpoint->find(weight_names::embed())->dtype, DType::kF32);
  EXPECT_TRUE(fs::exists(out / "model-00002-of-00002.safetensors"));
  const std::string bad = std::string(MIXSERVE_BINARY) + " make-model --preset nope --out '" +
                          out.string() + "' 2> /dev/null";
  EXPECT_NE(std::system(bad.c_str()), 0);
}

}  // namespace
}  // namespace mixserve
