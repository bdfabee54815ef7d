// FP8 on the host: the per-row quantization formula, `mixserve quantize`'s checkpoint, the CPU
// backend running it (dequantized to float32), and errors for malformed scale tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "model/fp8_quant.h"
#include "model/loader.h"
#include "model/make_model.h"
#include "model/quantize_checkpoint.h"
#include "model/safetensors.h"
#include "model/weight_names.h"
#include "temp_dir.h"
#include "util/error.h"

namespace mixserve {
namespace {

TEST(Fp8Quant, RowScalesAndRoundTrip) {
  std::mt19937 gen(7);
  std::normal_distribution<float> d(0.0f, 3.0f);
  const int64_t R = 5, C = 300;
  std::vector<float> w(R * C);
  for (float& x : w) x = d(gen);
  for (int64_t c = 0; c < C; ++c) w[2 * C + c] = 0.0f;  // an all-zero row
  w[3 * C + 17] = -1000.0f;                             // an outlier sets its row's scale
  std::vector<uint8_t> q(R * C);
  std::vector<float> scales(R), back(R * C);
  quantize_rows_fp8(w.data(), R, C, q.data(), scales.data());
  dequantize_rows_fp8(q.data(), scales.data(), true, R, C, back.data());
  EXPECT_FLOAT_EQ(scales[3], 1000.0f / 448.0f);
  EXPECT_EQ(q[3 * C + 17], 0xfe) << "the row's amax maps to -448";
  EXPECT_EQ(scales[2], 1.0f);
  for (int64_t r = 0; r < R; ++r) {
    float amax = 0;
    for (int64_t c = 0; c < C; ++c) amax = std::max(amax, std::fabs(w[r * C + c]));
    for (int64_t c = 0; c < C; ++c) {
      const float v = w[r * C + c], err = std::fabs(back[r * C + c] - v);
      // E4M3 keeps 3 mantissa bits: half an ulp is 1/16 of the value's binade (relative
      // 2^-4), and values below the smallest normal (2^-6 * scale) round in steps of 2^-9.
      EXPECT_LE(err, std::max(std::fabs(v) / 16.0f, scales[r] * 0x1p-10f) * 1.0001f)
          << "row " << r << " col " << c;
    }
  }
}

class Fp8Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeModelOptions mo;
    mo.preset = "tiny";
    mo.out = dir_.path() / "bf16";
    mo.dtype = DType::kBF16;
    make_model(mo);
    bf16_ = mo.out;
    fp8_ = dir_.path() / "fp8";
  }
  testing::TempDir dir_{"fp8_ckpt"};
  std::filesystem::path bf16_, fp8_;
};

TEST_F(Fp8Checkpoint, QuantizeWritesPerChannelE4M3) {
  const QuantizeResult r = quantize_checkpoint(bf16_, fp8_);
  ModelFiles in = open_model_dir(bf16_), out = open_model_dir(fp8_);
  EXPECT_TRUE(out.config.fp8);
  EXPECT_EQ(out.config.fp8_activation_scheme, "dynamic");
  const ModelConfig& c = in.config;
  // Per layer: q, k, v, o and 3 per expert.
  EXPECT_EQ(r.quantized_tensors, c.num_hidden_layers * (4 + 3 * c.num_local_experts));
  EXPECT_TRUE(std::filesystem::exists(fp8_ / "tokenizer.json"));
  const std::string q = weight_names::q_proj(1);
  const TensorView& wq =
      out.checkpoint->get(q, {c.num_attention_heads * c.head_dim, c.hidden_size});
  EXPECT_EQ(wq.dtype, DType::kF8E4M3);
  const TensorView* s = out.checkpoint->find(fp8_scale_name(q));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->shape, std::vector<int64_t>{wq.shape[0]});
  // The same bytes as quantizing the bf16 values directly.
  const TensorView& src = in.checkpoint->get(q, wq.shape);
  std::vector<float> v(src.numel()), scales(wq.shape[0]);
  src.to_float(v.data());
  std::vector<uint8_t> expect(v.size());
  quantize_rows_fp8(v.data(), wq.shape[0], wq.shape[1], expect.data(), scales.data());
  EXPECT_EQ(0, std::memcmp(expect.data(), wq.data, expect.size()));
  EXPECT_EQ(
      out.checkpoint->get(weight_names::router(0), {c.num_local_experts, c.hidden_size}).dtype,
      DType::kBF16)
      << "the router stays in the checkpoint's dtype";
  EXPECT_THROW(quantize_checkpoint(fp8_, dir_.path() / "again"), Error) << "already FP8";
}

// The CPU runs an FP8 checkpoint dequantized: its logits are those of the bf16 model with
// every projection weight rounded to E4M3 — close to, but not equal to, the bf16 model's.
TEST_F(Fp8Checkpoint, CpuBackendRunsDequantizedWeights) {
  quantize_checkpoint(bf16_, fp8_);
  auto ref = CpuBackend::load(bf16_, 1);
  auto fp8 = CpuBackend::load(fp8_, 1);
  for (Backend* b : {static_cast<Backend*>(ref.get()), static_cast<Backend*>(fp8.get())}) {
    b->allocate_kv_cache({8, 16});
  }
  BatchPlan p;
  p.max_blocks_per_seq = 2;
  p.block_tables = {0, 1};
  p.seq_offsets = {0, 20};
  p.context_lens = {20};
  for (int t = 0; t < 20; ++t) {
    p.token_ids.push_back(3 + (t * 7919) % 4000);
    p.positions.push_back(t);
    p.slot_mapping.push_back(t);
  }
  p.logits_rows = {19};
  const int V = ref->config().vocab_size;
  std::vector<float> a(V), b(V);
  ref->forward(p, a);
  fp8->forward(p, b);
  double num = 0, den = 0;
  for (int i = 0; i < V; ++i) {
    num += (a[i] - b[i]) * double(a[i] - b[i]);
    den += double(a[i]) * a[i];
  }
  const double rel = std::sqrt(num / den);
  EXPECT_GT(rel, 0.0) << "the weights were rounded";
  EXPECT_LT(rel, 0.1) << "E4M3 weights move logits by a few percent";
}

// Rewrites one tensor of the FP8 checkpoint (a single model.safetensors): removes `name`,
// then adds `with`.
void replace_tensor(const std::filesystem::path& dir, const std::string& name,
                    std::optional<TensorToWrite> with) {
  std::unique_ptr<Checkpoint> ck = Checkpoint::open(dir);
  std::vector<TensorToWrite> all;
  for (const std::string& n : ck->names()) {
    if (n == name) continue;
    const TensorView* t = ck->find(n);
    all.push_back(
        TensorToWrite{n, t->dtype, t->shape, std::vector<uint8_t>(t->data, t->data + t->nbytes)});
  }
  if (with) all.push_back(*with);  // replaces `name`, or adds it back
  ck.reset();
  write_safetensors(dir / "model.safetensors", all, {{"format", "pt"}});
}

TensorToWrite f32(const std::string& name, std::vector<int64_t> shape, std::vector<float> v) {
  TensorToWrite t{name, DType::kF32, std::move(shape), std::vector<uint8_t>(v.size() * 4)};
  std::memcpy(t.bytes.data(), v.data(), t.bytes.size());
  return t;
}

TEST_F(Fp8Checkpoint, MalformedScalesNameTheTensor) {
  quantize_checkpoint(bf16_, fp8_);
  const std::string w = weight_names::o_proj(0);
  const std::string s = fp8_scale_name(w);
  const int64_t rows = open_model_dir(fp8_).config.hidden_size;
  auto expect_error = [&](const std::string& what, const std::string& needle) {
    try {
      CpuBackend::load(fp8_, 1);
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << what << ": " << e.what();
    }
  };
  std::vector<float> bad(rows, 0.01f);
  bad[5] = -0.5f;
  replace_tensor(fp8_, s, f32(s, {rows}, bad));
  expect_error("negative", s);
  bad[5] = std::numeric_limits<float>::quiet_NaN();
  replace_tensor(fp8_, s, f32(s, {rows}, bad));
  expect_error("NaN", s);
  bad[5] = std::numeric_limits<float>::infinity();
  replace_tensor(fp8_, s, f32(s, {rows}, bad));
  expect_error("inf", s);
  replace_tensor(fp8_, s, f32(s, {rows, 2}, std::vector<float>(rows * 2, 0.01f)));
  expect_error("shape", s);
  replace_tensor(fp8_, s, std::nullopt);
  expect_error("missing", s);
  // A per-tensor scale ([] here) is valid.
  replace_tensor(fp8_, s, f32(s, {}, {0.01f}));
  EXPECT_NO_THROW(CpuBackend::load(fp8_, 1));
}

}  // namespace
}  // namespace mixserve
