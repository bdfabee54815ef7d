#include "model/quantize_checkpoint.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model/fp8_quant.h"
#include "model/loader.h"
#include "model/safetensors.h"
#include "model/weight_names.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kShardBytes = uint64_t{4} << 30;  // start a new file past 4 GiB

// The names quantized to FP8: the projections the CUDA backend runs as FP8 GEMMs.
std::set<std::string> projection_names(const ModelConfig& c) {
  namespace wn = weight_names;
  std::set<std::string> names;
  const int experts = c.moe ? c.num_local_experts : 1;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    for (const std::string& n : {wn::q_proj(l), wn::k_proj(l), wn::v_proj(l), wn::o_proj(l)}) {
      names.insert(n);
    }
    for (int e = 0; e < experts; ++e) {
      names.insert(wn::expert_gate(c, l, e));
      names.insert(wn::expert_up(c, l, e));
      names.insert(wn::expert_down(c, l, e));
    }
  }
  return names;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) throw_error(path.string(), ": cannot write");
}

}  // namespace

QuantizeResult quantize_checkpoint(const fs::path& in, const fs::path& out) {
  MIXSERVE_CHECK(fs::weakly_canonical(in) != fs::weakly_canonical(out),
                 "quantize: --out must differ from --model (", in.string(), ")");
  ModelFiles files = open_model_dir(in);
  MIXSERVE_CHECK(!files.config.fp8, in.string(),
                 ": the checkpoint is already FP8 (quantization_config in config.json)");
  fs::create_directories(out);
  for (const fs::directory_entry& e : fs::directory_iterator(in)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == "config.json" || name.ends_with(".safetensors") ||
        name == "model.safetensors.index.json") {
      continue;
    }
    fs::copy_file(e.path(), out / name, fs::copy_options::overwrite_existing);
  }
  for (const fs::directory_entry& e : fs::directory_iterator(out)) {  // stale weights
    if (e.path().filename().string().ends_with(".safetensors")) fs::remove(e.path());
  }
  ModelConfig config = files.config;
  config.fp8 = true;
  config.fp8_activation_scheme = "dynamic";
  write_text(out / "config.json", config.to_json_text());

  const std::set<std::string> quantized = projection_names(config);
  QuantizeResult result;
  std::vector<TensorToWrite> shard;
  std::vector<fs::path> written;
  std::map<std::string, int> shard_of;
  uint64_t shard_bytes = 0;
  auto flush = [&] {
    if (shard.empty()) return;
    char name[64];
    std::snprintf(name, sizeof(name), "part-%05d.safetensors", result.shards + 1);
    written.push_back(out / name);
    write_safetensors(written.back(), shard, {{"format", "pt"}});
    shard.clear();
    shard_bytes = 0;
    ++result.shards;
  };
  for (const ExpectedTensor& et : expected_tensors(config)) {
    const TensorView& t = files.checkpoint->get(et.name, et.shape);
    if (quantized.count(et.name) != 0) {
      const int64_t rows = et.shape.at(0), cols = t.numel() / rows;
      const std::vector<float> values = tensor_to_float(*files.checkpoint, t);
      TensorToWrite q{et.name, DType::kF8E4M3, et.shape, std::vector<uint8_t>(values.size())};
      std::vector<float> scales(static_cast<size_t>(rows));
      quantize_rows_fp8(values.data(), rows, cols, q.bytes.data(), scales.data());
      TensorToWrite s{
          fp8_scale_name(et.name), DType::kF32, {rows}, std::vector<uint8_t>(scales.size() * 4)};
      std::memcpy(s.bytes.data(), scales.data(), s.bytes.size());
      shard_bytes += q.bytes.size() + s.bytes.size();
      shard_of[q.name] = shard_of[s.name] = result.shards;
      shard.push_back(std::move(q));
      shard.push_back(std::move(s));
      ++result.quantized_tensors;
    } else {
      TensorToWrite c{et.name, t.dtype, et.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)};
      shard_bytes += c.bytes.size();
      shard_of[c.name] = result.shards;
      shard.push_back(std::move(c));
      ++result.copied_tensors;
    }
    if (shard_bytes >= kShardBytes) flush();
  }
  flush();
  for (const fs::path& p : written) result.bytes_written += fs::file_size(p);
  if (result.shards == 1) {
    fs::rename(written[0], out / "model.safetensors");
  } else {
    std::string index =
        "{\n  \"metadata\": {\n    \"total_size\": " + std::to_string(result.bytes_written) +
        "\n  },\n  \"weight_map\": {\n";
    size_t k = 0;
    for (const auto& [tensor, s] : shard_of) {
      index += "    \"" + tensor + "\": \"" + written[s].filename().string() + "\"" +
               (++k < shard_of.size() ? ",\n" : "\n");
    }
    write_text(out / "model.safetensors.index.json", index + "  }\n}\n");
  }
  log::info("quantize: ", result.quantized_tensors, " tensors to FP8, ", result.copied_tensors,
            " copied, ", result.shards, " file(s) in ", out.string());
  return result;
}

}  // namespace mixserve
