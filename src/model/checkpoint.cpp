// Checkpoint: a folder of safetensors files seen as one name → tensor map.
//
// Three layouts, in this order of preference: shards listed in model.safetensors.index.json (what
// Hugging Face writes for large models), a single model.safetensors, or any *.safetensors files
// without an index (hand-made folders); in the last case a name in two files is an error.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/safetensors.h"
#include "util/error.h"

namespace mixserve {
namespace {

namespace fs = std::filesystem;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// weight_map of an index file: tensor name → shard file name (relative to the folder).
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string file = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw_error(file, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw_error(file, ": not valid JSON");
  if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object()) {
    throw_error(file, ": expected an object with a \"weight_map\" object");
  }
  std::map<std::string, std::string> map;
  for (const auto& [name, shard] : j.at("weight_map").items()) {
    if (!shard.is_string()) throw_error(file, ": tensor ", name, ": shard name must be a string");
    const std::string s = shard.get<std::string>();
    if (s.empty() || fs::path(s).filename() != fs::path(s)) {
      throw_error(file, ": tensor ", name, ": shard \"", s, "\" must be a file name in the folder");
    }
    map[name] = s;
  }
  return map;
}

}  // namespace

std::unique_ptr<Checkpoint> Checkpoint::open(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw_error(dir.string(), ": not a directory");
  auto ck = std::unique_ptr<Checkpoint>(new Checkpoint());
  ck->dir_ = dir;
  const fs::path index_path = dir / "model.safetensors.index.json";
  const fs::path single = dir / "model.safetensors";

  if (fs::exists(index_path)) {
    const auto weight_map = read_weight_map(index_path);
    std::map<std::string, SafetensorsFile*> shards;
    for (const auto& [name, shard] : weight_map) {
      SafetensorsFile*& f = shards[shard];
      if (f == nullptr) {
        const fs::path shard_path = dir / shard;
        if (!fs::exists(shard_path)) {
          throw_error(index_path.string(), ": tensor ", name, " is in shard ", shard,
                      ", which does not exist in ", dir.string(), " (incomplete download?)");
        }
        ck->files_.push_back(SafetensorsFile::open(shard_path));
        f = ck->files_.back().get();
      }
      const TensorView* view = f->find(name);
      if (view == nullptr) {
        throw_error(f->path().string(), ": tensor ", name, " is listed in ",
                    index_path.filename().string(), " but missing from this shard");
      }
      ck->index_[name] = view;
    }
    return ck;
  }

  std::vector<fs::path> paths;
  if (fs::exists(single)) {
    paths.push_back(single);
  } else {
    for (const auto& entry : fs::directory_iterator(dir)) {
      if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
        paths.push_back(entry.path());
      }
    }
    std::sort(paths.begin(), paths.end());
  }
  if (paths.empty()) {
    throw_error(dir.string(), ": no model.safetensors, model.safetensors.index.json or "
                              "*.safetensors files (is this a Hugging Face model folder?)");
  }
  for (const fs::path& p : paths) {
    ck->files_.push_back(SafetensorsFile::open(p));
    for (const auto& [name, view] : ck->files_.back()->tensors()) {
      const auto [it, inserted] = ck->index_.emplace(name, &view);
      if (!inserted) {
        throw_error(p.string(), ": tensor ", name, " is also in ", it->second->file.string(),
                    " (add a model.safetensors.index.json to say which one to use)");
      }
    }
  }
  return ck;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name,
                                  const std::vector<int64_t>& expected_shape) const {
  const TensorView* v = find(name);
  if (v == nullptr) {
    throw_error(dir_.string(), ": tensor ", name,
                " missing (the checkpoint does not match config.json)");
  }
  if (v->shape != expected_shape) {
    throw_error(v->file.string(), ": tensor ", name, " has shape ", shape_str(v->shape),
                ", expected ", shape_str(expected_shape));
  }
  return *v;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, view] : index_) out.push_back(name);
  return out;
}

}  // namespace mixserve
