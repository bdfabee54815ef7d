#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "temp_dir.h"
#include "util/error.h"

namespace mixserve {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// A raw safetensors file: the 8-byte length (by default that of `header`), header, data.
void write_raw(const fs::path& path, const std::string& header, size_t data_bytes,
               int64_t header_len = -1) {
  const uint64_t n = header_len < 0 ? header.size() : static_cast<uint64_t>(header_len);
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
}

std::string open_error(const fs::path& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << path;
  return "";
}

// Expects opening a file with `header` (and `data_bytes` of data) to fail with a message that
// names the file, `tensor` (when given) and contains `expect`.
void expect_header_error(const std::string& header, size_t data_bytes, const std::string& tensor,
                         const std::string& expect) {
  const TempDir dir("st");
  const fs::path path = dir / "broken.safetensors";
  write_raw(path, header, data_bytes);
  const std::string msg = open_error(path);
  EXPECT_NE(msg.find("broken.safetensors"), std::string::npos) << msg;
  if (!tensor.empty()) {
    EXPECT_NE(msg.find("tensor " + tensor), std::string::npos) << msg;
  }
  EXPECT_NE(msg.find(expect), std::string::npos) << "expected \"" << expect << "\" in: " << msg;
}

TEST(Safetensors, RejectsFileShorterThanLength) {
  const TempDir dir("st");
  std::ofstream(dir / "short.safetensors") << "abc";
  const std::string msg = open_error(dir / "short.safetensors");
  EXPECT_NE(msg.find("short.safetensors: file is 3 bytes"), std::string::npos) << msg;
}

TEST(Safetensors, RejectsBadHeaderLengths) {
  const TempDir dir("st");
  write_raw(dir / "zero.safetensors", "{}", 0, 0);
  EXPECT_NE(open_error(dir / "zero.safetensors").find("zero.safetensors: header length is 0"),
            std::string::npos);
  write_raw(dir / "huge.safetensors", "{}", 0, 200ll << 20);
  EXPECT_NE(open_error(dir / "huge.safetensors").find("exceeds the 100 MB limit"),
            std::string::npos);
  write_raw(dir / "long.safetensors", "{}", 0, 4096);
  EXPECT_NE(open_error(dir / "long.safetensors").find("long.safetensors: header length 4096 "
                                                      "exceeds the file size"),
            std::string::npos);
}

TEST(Safetensors, RejectsHeaderThatIsNotAJsonObject) {
  expect_header_error("{\"a\": ", 0, "", "not valid JSON");
  expect_header_error("[1, 2, 3]", 0, "", "not a JSON object");
}

TEST(Safetensors, RejectsEntriesWithMissingOrWrongFields) {
  expect_header_error(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8, "w", "no \"dtype\"");
  expect_header_error(R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})", 8, "w", "no \"shape\"");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [2]}})", 8, "w", "no \"data_offsets\"");
  expect_header_error(R"({"w": [1]})", 8, "w", "not an object");
  expect_header_error(R"({"w": {"dtype": 3, "shape": [2], "data_offsets": [0, 8]}})", 8, "w",
                      "dtype must be a string");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})", 8, "w",
                      "shape must be a list");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8,
                      "w", "non-integer");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8, "w",
                      "data_offsets must be two non-negative integers");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", 8,
                      "w", "data_offsets must be two non-negative integers");
}

TEST(Safetensors, RejectsUnknownDtypeAndNegativeDims) {
  expect_header_error(R"({"w": {"dtype": "F8_E5M2", "shape": [2], "data_offsets": [0, 2]}})", 2,
                      "w", "unknown dtype \"F8_E5M2\"");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}})", 8,
                      "w", "negative dimension");
}

TEST(Safetensors, RejectsBadOffsets) {
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 8, "w",
                      "begin after end");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8,
                      "w", "end beyond the data area");
  expect_header_error(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8, "w",
                      "needs 3 × 4 bytes");
  expect_header_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F16", "shape": [4], "data_offsets": [4, 12]}})",
                      16, "b", "overlaps tensor a");
  // Overlap found even when the later-starting tensor sorts first by name.
  expect_header_error(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [6, 10]},
                          "z": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}})",
                      16, "a", "overlaps tensor z");
}

TEST(Safetensors, RejectsSizeOverflow) {
  // 2^32 × 2^32 elements overflows 64 bits; must not wrap around to a small size.
  expect_header_error(
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0,
      "w", "too large");
  // numel fits but × 8 bytes does not.
  expect_header_error(
      R"({"w": {"dtype": "I64", "shape": [2305843009213693952, 2], "data_offsets": [0, 0]}})", 0,
      "w", "");
}

TEST(Safetensors, RejectsDuplicateNames) {
  expect_header_error(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                          "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                      2, "w", "appears twice");
}

TEST(Safetensors, MetadataMustMapStringsToStrings) {
  expect_header_error(R"({"__metadata__": {"format": 1}})", 0, "", "__metadata__ entry \"format\"");
  expect_header_error(R"({"__metadata__": [1]})", 0, "", "__metadata__ must be an object");
}

std::vector<uint8_t> bytes_of(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  return {b, b + n};
}

TEST(Safetensors, WriteReadRoundTripAndLayout) {
  const TempDir dir("st");
  const float f32[3] = {1.5f, -2.0f, 3.25f};
  const uint16_t bf16[2] = {float_to_bf16(0.5f), float_to_bf16(-3.0f)};
  const uint16_t f16[2] = {float_to_fp16(0.25f), float_to_fp16(100.0f)};
  const uint8_t f8[3] = {float_to_fp8e4m3(1.0f), float_to_fp8e4m3(-448.0f),
                         float_to_fp8e4m3(0.0f)};
  std::vector<TensorToWrite> ts = {
      {"z.f32", DType::kF32, {3}, bytes_of(f32, sizeof(f32))},
      {"a.bf16", DType::kBF16, {1, 2}, bytes_of(bf16, sizeof(bf16))},
      {"m.f16", DType::kF16, {2, 1}, bytes_of(f16, sizeof(f16))},
      {"b.f8", DType::kF8E4M3, {3}, bytes_of(f8, sizeof(f8))},
      {"scalar", DType::kF32, {}, bytes_of(f32, 4)},
  };
  const fs::path path = dir / "rt.safetensors";
  write_safetensors(path, ts, {{"format", "pt"}});

  // Header padded with spaces so the data starts 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string header(n, '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  EXPECT_EQ(header.back() == ' ' || header.back() == '}', true);

  const auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), 5u);
  // Tensors are laid out in name order.
  const uint8_t* prev = nullptr;
  for (const auto& [name, view] : f->tensors()) {
    if (prev != nullptr) {
      EXPECT_GT(view.data, prev) << name;
    }
    prev = view.data;
  }
  std::vector<float> out(3);
  f->find("z.f32")->to_float(out.data());
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f, 3.25f}));
  f->find("a.bf16")->to_float(out.data());
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -3.0f);
  EXPECT_EQ(f->find("a.bf16")->shape, (std::vector<int64_t>{1, 2}));
  f->find("m.f16")->to_float(out.data());
  EXPECT_EQ(out[0], 0.25f);
  EXPECT_EQ(out[1], 100.0f);
  f->find("b.f8")->to_float(out.data());
  EXPECT_EQ(out, (std::vector<float>{1.0f, -448.0f, 0.0f}));
  EXPECT_EQ(f->find("scalar")->numel(), 1);
  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(Safetensors, ToFloatOnIntegerTensorNamesIt) {
  const TempDir dir("st");
  const int32_t ids[2] = {1, 2};
  write_safetensors(dir / "ints.safetensors", {{"ids", DType::kI32, {2}, bytes_of(ids, 8)}});
  const auto f = SafetensorsFile::open(dir / "ints.safetensors");
  float out[2];
  try {
    f->find("ids")->to_float(out);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ints.safetensors: tensor ids has dtype I32"),
              std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, WriterRejectsWrongByteCount) {
  const TempDir dir("st");
  EXPECT_THROW(write_safetensors(dir / "x.safetensors", {{"w", DType::kF32, {2}, {0, 0, 0}}}),
               Error);
  EXPECT_THROW(write_safetensors(dir / "x.safetensors", {{"w", DType::kU8, {1}, {0}},
                                                         {"w", DType::kU8, {1}, {0}}}),
               Error);
}

}  // namespace
}  // namespace mixserve
