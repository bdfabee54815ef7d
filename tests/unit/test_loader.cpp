// Checkpoint folders (single file, sharded with index, shards without index) and
// open_model_dir's checks of a checkpoint against its config.json.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include "model/loader.h"
#include "model/make_model.h"
#include "model/weight_names.h"
#include "temp_dir.h"
#include "util/error.h"

namespace mixserve {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

TensorToWrite f32_tensor(const std::string& name, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  TensorToWrite t{name, DType::kF32, shape, std::vector<uint8_t>(static_cast<size_t>(n) * 4)};
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(i);
    std::memcpy(t.bytes.data() + 4 * i, &v, 4);
  }
  return t;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

TEST(Checkpoint, ShardedWithIndex) {
  const TempDir dir("ck");
  write_safetensors(dir / "s1.safetensors", {f32_tensor("a", {2, 3})});
  write_safetensors(dir / "s2.safetensors", {f32_tensor("b", {4}), f32_tensor("extra", {1})});
  write_text(dir / "model.safetensors.index.json",
             R"({"metadata": {"total_size": 40}, "weight_map": {"a": "s1.safetensors",
                 "b": "s2.safetensors"}})");
  const auto ck = Checkpoint::open(dir.path());
  EXPECT_EQ(ck->names(), (std::vector<std::string>{"a", "b"}));
  const TensorView& b = ck->get("b", {4});
  std::vector<float> v(4);
  b.to_float(v.data());
  EXPECT_EQ(v, (std::vector<float>{0, 1, 2, 3}));
  EXPECT_NE(error_of([&] { ck->get("a", {3, 2}); })
                .find("s1.safetensors: tensor a has shape [2,3], expected [3,2]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ck->get("c", {1}); })
                .find("tensor c missing (the checkpoint does not match config.json)"),
            std::string::npos);
}

TEST(Checkpoint, IndexErrorsNameFileAndTensor) {
  const TempDir dir("ck");
  write_safetensors(dir / "s1.safetensors", {f32_tensor("a", {2})});
  write_text(dir / "model.safetensors.index.json",
             R"({"weight_map": {"a": "s1.safetensors", "b": "s9.safetensors"}})");
  std::string msg = error_of([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(msg.find("model.safetensors.index.json: tensor b is in shard s9.safetensors"),
            std::string::npos)
      << msg;

  write_text(dir / "model.safetensors.index.json",
             R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})");
  msg = error_of([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(msg.find("s1.safetensors: tensor b is listed in model.safetensors.index.json but "
                     "missing"),
            std::string::npos)
      << msg;

  write_text(dir / "model.safetensors.index.json", "{\"weight_map\": ");
  msg = error_of([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(msg.find("model.safetensors.index.json: not valid JSON"), std::string::npos) << msg;

  write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"a": "../s1.safetensors"}})");
  msg = error_of([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(msg.find("tensor a: shard \"../s1.safetensors\" must be a file name"),
            std::string::npos)
      << msg;
}

TEST(Checkpoint, SeveralFilesWithoutIndex) {
  const TempDir dir("ck");
  write_safetensors(dir / "part-a.safetensors", {f32_tensor("x", {1})});
  write_safetensors(dir / "part-b.safetensors", {f32_tensor("y", {2})});
  EXPECT_EQ(Checkpoint::open(dir.path())->names(), (std::vector<std::string>{"x", "y"}));
  write_safetensors(dir / "part-c.safetensors", {f32_tensor("x", {1})});
  const std::string msg = error_of([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(msg.find("part-c.safetensors: tensor x is also in"), std::string::npos) << msg;
}

TEST(Checkpoint, EmptyOrMissingFolder) {
  const TempDir dir("ck");
  EXPECT_NE(error_of([&] { Checkpoint::open(dir.path()); }).find("no model.safetensors"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Checkpoint::open(dir / "nope"); }).find("not a directory"),
            std::string::npos);
}

TEST(Checkpoint, CorruptShardIsNamed) {
  const TempDir dir("ck");
  write_text(dir / "model.safetensors", std::string(20, 'x'));
  const std::string msg = error_of([&] { Checkpoint::open(dir.path()); });
  EXPECT_NE(msg.find("model.safetensors: header length"), std::string::npos) << msg;
}

// A tiny-dense model written by make_model; tests then break one thing in it.
class ModelDir : public ::testing::Test {
 protected:
  void SetUp() override {
    write_text(tok_ / "tokenizer.json", "{}");
    write_text(tok_ / "tokenizer_config.json", "{}");
    MakeModelOptions o;
    o.preset = "tiny-dense?layers=1&vocab=64";
    o.out = dir_.path();
    o.tokenizer_dir = tok_.path();
    o.dtype = DType::kF32;
    made_ = make_model(o);
  }
  // Rewrites model.safetensors with `edit` applied to the tensors.
  template <typename F>
  void rewrite(F&& edit) {
    std::vector<TensorToWrite> ts;
    for (const ExpectedTensor& t : expected_tensors(made_.config)) {
      ts.push_back(f32_tensor(t.name, t.shape));
    }
    edit(ts);
    write_safetensors(dir_ / "model.safetensors", ts);
  }
  std::string open_error() {
    return error_of([&] { open_model_dir(dir_.path()); });
  }
  TempDir dir_{"model"}, tok_{"tok"};
  MadeModel made_;
};

TEST_F(ModelDir, OpensAValidModel) {
  const ModelFiles m = open_model_dir(dir_.path());
  EXPECT_EQ(m.config.num_hidden_layers, 1);
  EXPECT_EQ(m.config.vocab_size, 64);
  EXPECT_EQ(m.dir, dir_.path());
  EXPECT_EQ(m.checkpoint->names().size(), expected_tensors(m.config).size());
}

TEST_F(ModelDir, WrongShapeIsNamed) {
  rewrite([](std::vector<TensorToWrite>& ts) {
    for (auto& t : ts) {
      if (t.name == weight_names::q_proj(0)) t = f32_tensor(t.name, {64, 128});
    }
  });
  EXPECT_NE(open_error().find("model.safetensors: tensor model.layers.0.self_attn.q_proj.weight "
                              "has shape [64,128], expected [128,128]"),
            std::string::npos)
      << open_error();
}

TEST_F(ModelDir, MissingTensorIsNamed) {
  rewrite([](std::vector<TensorToWrite>& ts) {
    std::erase_if(ts, [](const TensorToWrite& t) { return t.name == weight_names::lm_head(); });
  });
  EXPECT_NE(open_error().find(": tensor lm_head.weight missing (the checkpoint does not match "
                              "config.json)"),
            std::string::npos)
      << open_error();
}

TEST_F(ModelDir, NonFloatDtypeIsRejected) {
  rewrite([](std::vector<TensorToWrite>& ts) {
    for (auto& t : ts) {
      if (t.name == weight_names::final_norm()) t.dtype = DType::kI32;
    }
  });
  EXPECT_NE(open_error().find("tensor model.norm.weight has dtype I32, expected F32, F16 or BF16"),
            std::string::npos)
      << open_error();
}

TEST_F(ModelDir, Fp8NeedsConfigAndScale) {
  const std::string w = weight_names::o_proj(0);  // [128, 128]
  // o_proj as F8_E4M3, with a scale of the given shape and dtype (none when nullopt).
  auto make_fp8 = [&](std::optional<std::vector<int64_t>> scale_shape, DType scale_dtype) {
    rewrite([&](std::vector<TensorToWrite>& ts) {
      for (auto& t : ts) {
        if (t.name == w) t = {w, DType::kF8E4M3, {128, 128}, std::vector<uint8_t>(128 * 128, 0x38)};
      }
      if (scale_shape) {
        TensorToWrite s = f32_tensor(fp8_scale_name(w), *scale_shape);
        s.dtype = scale_dtype;
        s.bytes.resize(s.bytes.size() / 4 * dtype_size(scale_dtype));
        ts.push_back(s);
      }
    });
  };
  make_fp8(std::vector<int64_t>{128}, DType::kF32);
  EXPECT_NE(open_error().find("needs quantization_config.quant_method"), std::string::npos);

  ModelConfig c = made_.config;
  c.fp8 = true;
  c.fp8_activation_scheme = "dynamic";
  write_text(dir_ / "config.json", c.to_json_text());
  for (const auto& shape : std::vector<std::vector<int64_t>>{{128}, {128, 1}, {}, {1}}) {
    make_fp8(shape, DType::kF32);  // per channel and per tensor
    EXPECT_NO_THROW(open_model_dir(dir_.path())) << shape.size();
  }
  make_fp8(std::vector<int64_t>{64}, DType::kF32);
  EXPECT_NE(open_error().find("tensor " + w + "_scale has shape [64], expected [128]"),
            std::string::npos)
      << open_error();
  make_fp8(std::vector<int64_t>{128}, DType::kBF16);
  EXPECT_NE(open_error().find("has dtype BF16, expected F32"), std::string::npos) << open_error();
  make_fp8(std::nullopt, DType::kF32);
  EXPECT_NE(open_error().find("is F8_E4M3 but its scale " + w + "_scale is missing"),
            std::string::npos)
      << open_error();
}

// Activation scales ("...o_proj.input_scale"): required under activation_scheme "static",
// optional under "dynamic"; when present one positive finite F32/BF16/F16 value.
TEST_F(ModelDir, Fp8ActivationScalesAreChecked) {
  const std::string w = weight_names::o_proj(0);  // [128, 128]
  const std::string in = "model.layers.0.self_attn.o_proj.input_scale";
  ASSERT_EQ(fp8_input_scale_name(w), in);
  // o_proj as F8_E4M3 with a per-tensor weight scale, and an input scale of this shape, dtype
  // and value (none when nullopt).
  auto make_fp8 = [&](std::optional<std::vector<int64_t>> shape, DType dtype, float value) {
    rewrite([&](std::vector<TensorToWrite>& ts) {
      for (auto& t : ts) {
        if (t.name == w) t = {w, DType::kF8E4M3, {128, 128}, std::vector<uint8_t>(128 * 128, 0x38)};
      }
      ts.push_back(f32_tensor(fp8_scale_name(w), {}));
      if (shape) {
        int64_t n = 1;
        for (int64_t d : *shape) n *= d;
        TensorToWrite s{in, dtype, *shape, {}};
        if (dtype == DType::kF32 || dtype == DType::kI32) {  // I32: the float's bits
          std::vector<float> v(size_t(n), value);
          s.bytes.resize(v.size() * 4);
          std::memcpy(s.bytes.data(), v.data(), s.bytes.size());
        } else {  // BF16: the float's upper half
          uint32_t bits = 0;
          std::memcpy(&bits, &value, 4);
          for (int64_t i = 0; i < n; ++i) {
            s.bytes.push_back(uint8_t(bits >> 16));
            s.bytes.push_back(uint8_t(bits >> 24));
          }
        }
        ts.push_back(s);
      }
    });
  };
  ModelConfig c = made_.config;
  c.fp8 = true;
  for (const std::string scheme : {"dynamic", "static"}) {
    c.fp8_activation_scheme = scheme;
    write_text(dir_ / "config.json", c.to_json_text());
    make_fp8(std::vector<int64_t>{}, DType::kF32, 0.05f);
    EXPECT_NO_THROW(open_model_dir(dir_.path())) << scheme;
    make_fp8(std::vector<int64_t>{1}, DType::kBF16, 0.5f);
    EXPECT_NO_THROW(open_model_dir(dir_.path())) << scheme;
    make_fp8(std::vector<int64_t>{128}, DType::kF32, 0.05f);
    EXPECT_NE(open_error().find("tensor " + in + " has shape [128], expected [] or [1]"),
              std::string::npos)
        << open_error();
    make_fp8(std::vector<int64_t>{}, DType::kF32, 0.0f);
    EXPECT_NE(open_error().find("an activation scale must be a positive finite number"),
              std::string::npos)
        << open_error();
    make_fp8(std::vector<int64_t>{}, DType::kF32, std::numeric_limits<float>::infinity());
    EXPECT_NE(open_error().find("tensor " + in + " holds inf"), std::string::npos)
        << open_error();
    make_fp8(std::vector<int64_t>{}, DType::kI32, 1.0f);
    EXPECT_NE(open_error().find("has dtype I32, expected F32, F16 or BF16"), std::string::npos)
        << open_error();
  }
  make_fp8(std::nullopt, DType::kF32, 0.0f);  // static (the last scheme): required
  EXPECT_NE(open_error().find("activation_scheme \"static\", but its activation scale " + in +
                              " is missing"),
            std::string::npos)
      << open_error();
  c.fp8_activation_scheme = "dynamic";
  write_text(dir_ / "config.json", c.to_json_text());
  EXPECT_NO_THROW(open_model_dir(dir_.path()));  // dynamic: optional
}

TEST_F(ModelDir, ConfigMismatchOrAbsence) {
  ModelConfig c = made_.config;
  c.num_hidden_layers = 2;  // the checkpoint has one layer
  write_text(dir_ / "config.json", c.to_json_text());
  EXPECT_NE(open_error().find("tensor model.layers.1.input_layernorm.weight missing"),
            std::string::npos);
  fs::remove(dir_ / "config.json");
  EXPECT_NE(open_error().find("config.json: missing"), std::string::npos);
  EXPECT_NE(error_of([&] { open_model_dir(dir_ / "absent"); }).find("absent: model folder does "
                                                                    "not exist"),
            std::string::npos);
  EXPECT_NE(error_of([&] { open_model_dir(dir_ / "model.safetensors"); }).find("not a folder"),
            std::string::npos);
}

}  // namespace
}  // namespace mixserve
