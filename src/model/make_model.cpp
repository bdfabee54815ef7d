#include "model/make_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string_view>

#include "model/presets.h"
#include "model/safetensors.h"
#include "util/error.h"
#include "util/paths.h"

namespace mixserve {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

// splitmix64's finalizer: a bijective mix, so (key, index) → value is counter-based and any
// element can be made without making the ones before it.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw_error(path.string(), ": cannot write");
}

const char* config_dtype_name(DType t) {
  switch (t) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    default: return "float32";
  }
}

TensorToWrite make_tensor(const ExpectedTensor& t, DType dtype, uint64_t seed) {
  TensorToWrite w;
  w.name = t.name;
  w.dtype = dtype;
  w.shape = t.shape;
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::vector<float> values(static_cast<size_t>(n));
  synthetic_tensor_values(t, seed, values.data());
  w.bytes.resize(static_cast<size_t>(n) * dtype_size(dtype));
  uint8_t* dst = w.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(dst + 4 * i, &values[i], 4);
    } else {
      const uint16_t h = dtype == DType::kBF16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
      std::memcpy(dst + 2 * i, &h, 2);  // little-endian host, as safetensors requires
    }
  }
  return w;
}

// Shard of each tensor: balanced by bytes, contiguous in the expected order, none empty.
std::vector<int> assign_shards(const std::vector<uint64_t>& bytes, int shards) {
  const int T = static_cast<int>(bytes.size());
  uint64_t total = 0;
  for (uint64_t b : bytes) total += b;
  std::vector<int> shard(T);
  uint64_t before = 0;
  int prev = -1;
  for (int i = 0; i < T; ++i) {
    const int by_bytes = total == 0 ? 0 : static_cast<int>(before * shards / total);
    // At least one tensor per later shard, and never skip a shard.
    const int s = std::min(prev + 1, std::max({prev, by_bytes, shards - T + i}));
    shard[i] = s;
    prev = s;
    before += bytes[i];
  }
  return shard;
}

void remove_old_weights(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool shard = name.rfind("model-", 0) == 0 && ends_with(name, ".safetensors");
    if (shard || name == "model.safetensors" || name == "model.safetensors.index.json") {
      fs::remove(entry.path());
    }
  }
}

void copy_tokenizer(const fs::path& from, const fs::path& to) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    if (!fs::exists(from / name)) {
      throw_error((from / name).string(), ": missing (--tokenizer-dir must hold tokenizer.json "
                                          "and tokenizer_config.json)");
    }
  }
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    if (fs::exists(from / name)) {
      fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing);
    }
  }
}

}  // namespace

SyntheticTensorParams synthetic_tensor_params(const ExpectedTensor& t, uint64_t seed) {
  const std::string_view name = t.name;
  bool norm = false;
  double std_dev = 1.0;  // embeddings
  if (ends_with(name, "layernorm.weight") || name == weight_names::final_norm()) {
    norm = true;
  } else if (name != weight_names::embed()) {
    MIXSERVE_CHECK(t.shape.size() == 2, "synthetic weights: ", t.name, " is not 2-D");
    double gain = 1.0;
    if (ends_with(name, "block_sparse_moe.gate.weight")) gain = 3.0;
    if (name == weight_names::lm_head()) gain = 7.0;
    std_dev = gain / std::sqrt(static_cast<double>(t.shape[1]));
  }
  SyntheticTensorParams p;
  p.norm = norm;
  // U(-a, a) has std a / sqrt(3).
  p.half_width = norm ? 0.1 : std_dev * std::sqrt(3.0);
  p.key = mix64(mix64(seed + kGolden) ^ fnv1a(name));
  return p;
}

void synthetic_tensor_values(const ExpectedTensor& t, uint64_t seed, float* out) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  const SyntheticTensorParams p = synthetic_tensor_params(t, seed);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = mix64(p.key + static_cast<uint64_t>(i + 1) * kGolden);
    // 24 random bits → an exact value in (-1, 1): (2k - 2^24) / 2^24.
    const int64_t k = static_cast<int64_t>(r >> 40);
    const double x = static_cast<double>(2 * k - (int64_t{1} << 24)) * 0x1p-24;
    const double scaled = x * p.half_width;  // separate statements: no fused multiply-add
    const double v = p.norm ? 1.0 + scaled : scaled;
    out[i] = static_cast<float>(v);
  }
}

DType parse_weight_dtype(const std::string& name) {
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  if (name == "f16" || name == "fp16" || name == "float16") return DType::kF16;
  if (name == "f32" || name == "fp32" || name == "float32") return DType::kF32;
  throw_error("--dtype ", name, " is not supported (bf16, f16 or f32)");
}

MadeModel make_model(const MakeModelOptions& o) {
  MIXSERVE_CHECK(!o.out.empty(), "make-model: --out is required");
  MIXSERVE_CHECK(o.dtype == DType::kBF16 || o.dtype == DType::kF16 || o.dtype == DType::kF32,
                 "make-model: dtype ", dtype_name(o.dtype), " is not supported (bf16, f16, f32)");
  MadeModel made;
  made.config = preset_from_spec(o.preset);
  made.config.dtype = config_dtype_name(o.dtype);
  const std::vector<ExpectedTensor> tensors = expected_tensors(made.config);
  const int T = static_cast<int>(tensors.size());
  if (o.shards < 1 || o.shards > T) {
    throw_error("make-model: --shards ", o.shards, " must be between 1 and ", T,
                " (the number of tensors)");
  }
  const fs::path tokenizer_dir =
      o.tokenizer_dir.empty() ? assets_dir() / "tokenizer" / "mixtral" : o.tokenizer_dir;

  fs::create_directories(o.out);
  remove_old_weights(o.out);
  write_text(o.out / "config.json", made.config.to_json_text());
  write_text(o.out / "generation_config.json",
             "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n");
  copy_tokenizer(tokenizer_dir, o.out);

  std::vector<uint64_t> bytes;
  for (const ExpectedTensor& t : tensors) {
    uint64_t n = dtype_size(o.dtype);
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    bytes.push_back(n);
    made.weight_bytes += n;
  }
  const std::vector<int> shard_of = assign_shards(bytes, o.shards);
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  std::map<std::string, std::string> weight_map;
  // One shard at a time, so memory stays at one shard's size.
  for (int s = 0, i = 0; s < o.shards; ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", s + 1, o.shards);
    const fs::path path = o.out / (o.shards == 1 ? "model.safetensors" : name);
    std::vector<TensorToWrite> shard;
    for (; i < T && shard_of[i] == s; ++i) {
      shard.push_back(make_tensor(tensors[i], o.dtype, o.seed));
      weight_map[tensors[i].name] = path.filename().string();
    }
    write_safetensors(path, shard, metadata);
    made.weight_files.push_back(path);
  }
  if (o.shards > 1) {
    std::string index = "{\n  \"metadata\": {\n    \"total_size\": " +
                        std::to_string(made.weight_bytes) + "\n  },\n  \"weight_map\": {\n";
    size_t k = 0;
    for (const auto& [tensor, file] : weight_map) {
      index += "    \"" + tensor + "\": \"" + file + "\"" + (++k < weight_map.size() ? ",\n" : "\n");
    }
    write_text(o.out / "model.safetensors.index.json", index + "  }\n}\n");
  }
  made.num_tensors = tensors.size();
  return made;
}

}  // namespace mixserve
