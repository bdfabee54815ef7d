// Safetensors reading (mmap + full header validation) and writing.
//
// A checkpoint comes from outside, so nothing in its header is trusted: sizes are checked with
// overflow-safe arithmetic before any pointer is formed, and every failure names the file and
// the tensor so the user knows which download is broken.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "util/error.h"

namespace mixserve {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the Python library's limit

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Parses the header, rejecting a tensor name that appears twice (nlohmann would keep the last).
json parse_header(const char* begin, const char* end, const std::string& file) {
  std::string duplicate;
  std::set<std::string> seen;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  json j = json::parse(begin, end, cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw_error(file, ": header is not valid JSON (truncated download?)");
  if (!j.is_object()) throw_error(file, ": header is not a JSON object");
  if (!duplicate.empty()) throw_error(file, ": tensor ", duplicate, " appears twice in the header");
  return j;
}

// Reads one header entry into `view` (pointer filled later); returns [begin, end) offsets.
std::pair<uint64_t, uint64_t> parse_entry(const std::string& file, const std::string& name,
                                          const json& e, uint64_t data_size, TensorView* view) {
  const std::string where = file + ": tensor " + name;
  if (!e.is_object()) throw_error(where, ": header entry is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) throw_error(where, ": header entry has no \"", key, "\"");
  }
  const json& dt = e.at("dtype");
  if (!dt.is_string()) throw_error(where, ": dtype must be a string");
  if (!parse_dtype(dt.get<std::string>(), &view->dtype)) {
    throw_error(where, ": unknown dtype \"", dt.get<std::string>(),
                "\" (supported: F32, F16, BF16, F8_E4M3, I32, I64, U8)");
  }
  const json& shape = e.at("shape");
  if (!shape.is_array()) throw_error(where, ": shape must be a list of integers");
  uint64_t numel = 1;
  for (const json& d : shape) {
    if (!d.is_number_integer()) throw_error(where, ": shape ", shape.dump(), " has a non-integer");
    if (d.is_number_unsigned() ? false : d.get<int64_t>() < 0) {
      throw_error(where, ": shape ", shape.dump(), " has a negative dimension");
    }
    const uint64_t dim = d.get<uint64_t>();
    if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel)) {
      throw_error(where, ": shape ", shape.dump(), " is too large");
    }
    view->shape.push_back(static_cast<int64_t>(dim));
  }
  const json& off = e.at("data_offsets");
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned()) {
    throw_error(where, ": data_offsets must be two non-negative integers (got ", off.dump(), ")");
  }
  const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end) throw_error(where, ": data_offsets ", off.dump(), " begin after end");
  if (end > data_size) {
    throw_error(where, ": data_offsets ", off.dump(), " end beyond the data area (", data_size,
                " bytes; truncated file?)");
  }
  uint64_t expected = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(view->dtype)), &expected) ||
      end - begin != expected) {
    throw_error(where, ": data_offsets ", off.dump(), " hold ", end - begin, " bytes, but ",
                dt.get<std::string>(), " ", shape_str(view->shape), " needs ", numel, " × ",
                dtype_size(view->dtype), " bytes");
  }
  view->name = name;
  view->nbytes = static_cast<size_t>(end - begin);
  return {begin, end};
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void TensorView::to_float(float* out) const {
  const int64_t n = numel();
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, data, static_cast<size_t>(n) * 4);
      return;
    case DType::kBF16:
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, data + 2 * i, 2);  // the mapping need not be 2-byte aligned
        out[i] = dtype == DType::kBF16 ? bf16_to_float(v) : fp16_to_float(v);
      }
      return;
    case DType::kF8E4M3:
      for (int64_t i = 0; i < n; ++i) out[i] = fp8e4m3_to_float(data[i]);
      return;
    default:
      throw_error(file.string(), ": tensor ", name, " has dtype ", dtype_name(dtype),
                  ", which is not a float type");
  }
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
  const std::string file = path.string();
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_error(file, ": cannot open (", std::strerror(errno), ")");
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_error(file, ": not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw_error(file, ": file is ", size, " bytes, shorter than the 8-byte header length");
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) throw_error(file, ": mmap failed (", std::strerror(errno), ")");
  f->map_ = map;
  f->map_size_ = size;  // from here on the destructor unmaps, also when validation throws

  const auto* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len == 0) throw_error(file, ": header length is 0");
  if (header_len > kMaxHeaderBytes) {
    throw_error(file, ": header length ", header_len, " exceeds the 100 MB limit (corrupt file?)");
  }
  if (header_len > size - 8) {
    throw_error(file, ": header length ", header_len, " exceeds the file size ", size,
                " (truncated file?)");
  }
  const auto* hbegin = reinterpret_cast<const char*>(bytes + 8);
  const json header = parse_header(hbegin, hbegin + header_len, file);
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw_error(file, ": __metadata__ must be an object of strings");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) {
          throw_error(file, ": __metadata__ entry \"", k, "\" must be a string (got ", v.dump(),
                      ")");
        }
        f->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    TensorView view;
    view.file = path;
    const auto [begin, end] = parse_entry(file, name, entry, data_size, &view);
    view.data = data + begin;
    ranges.push_back({begin, end, name});
    f->tensors_.emplace(name, std::move(view));
  }
  // Overlap check: sorted by begin, each range must start at or after the previous end.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      throw_error(file, ": tensor ", ranges[i].name, " data [", ranges[i].begin, ", ",
                  ranges[i].end, ") overlaps tensor ", ranges[i - 1].name, " [",
                  ranges[i - 1].begin, ", ", ranges[i - 1].end, ")");
    }
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void write_safetensors(const fs::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> sorted;
  for (const TensorToWrite& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });

  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const TensorToWrite& t = *sorted[i];
    if (i > 0 && sorted[i - 1]->name == t.name) {
      throw_error(path.string(), ": tensor ", t.name, " given twice");
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) throw_error(path.string(), ": tensor ", t.name, " has a negative dimension");
      numel *= static_cast<uint64_t>(d);
    }
    if (t.bytes.size() != numel * dtype_size(t.dtype)) {
      throw_error(path.string(), ": tensor ", t.name, " has ", t.bytes.size(), " bytes, ",
                  dtype_name(t.dtype), " ", shape_str(t.shape), " needs ",
                  numel * dtype_size(t.dtype));
    }
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.empty() ? "{}" : header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned, as in Python

  // Write beside the target and rename, so a reader never sees a half-written file.
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw_error(tmp.string(), ": cannot create (", std::strerror(errno), ")");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{text.size()} >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const TensorToWrite* t : sorted) {
      out.write(reinterpret_cast<const char*>(t->bytes.data()),
                static_cast<std::streamsize>(t->bytes.size()));
    }
    out.flush();
    if (!out) throw_error(tmp.string(), ": write failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw_error(path.string(), ": cannot move the written file into place (", ec.message(), ")");
}

}  // namespace mixserve
