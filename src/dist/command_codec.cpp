#include "dist/command_codec.h"

#include <cstring>
#include <type_traits>

#include "util/error.h"

namespace mixserve::dist {
namespace {

constexpr uint8_t kMagic = 0x6d;  // 'm'
constexpr uint8_t kVersion = 1;

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    put<uint64_t>(v.size());
    const auto* p = reinterpret_cast<const uint8_t*>(v.data());
    out_.insert(out_.end(), p, p + v.size() * sizeof(T));
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  Reader(const std::vector<uint8_t>& in, const char* what) : in_(in), what_(what) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <typename T>
  std::vector<T> get_vector() {
    const uint64_t n = get<uint64_t>();
    MIXSERVE_CHECK(n <= (in_.size() - pos_) / sizeof(T), what_, ": a vector of ", n,
                   " elements is longer than the rest of the message (", in_.size() - pos_,
                   " bytes)");
    std::vector<T> v(n);
    if (n > 0) std::memcpy(v.data(), in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return v;
  }
  void finish() const {
    MIXSERVE_CHECK(pos_ == in_.size(), what_, ": ", in_.size() - pos_,
                   " trailing bytes after the message");
  }

 private:
  void need(size_t n) const {
    MIXSERVE_CHECK(in_.size() - pos_ >= n, what_, ": truncated message (", in_.size(),
                   " bytes)");
  }
  const std::vector<uint8_t>& in_;
  const char* what_;
  size_t pos_ = 0;
};

void put_header(Writer& w, uint8_t kind) {
  w.put(kMagic);
  w.put(kVersion);
  w.put(kind);
}

uint8_t get_header(Reader& r, const char* what) {
  const uint8_t magic = r.get<uint8_t>(), version = r.get<uint8_t>();
  MIXSERVE_CHECK(magic == kMagic && version == kVersion, what, ": not a mixserve rank message "
                 "of version ", int(kVersion), " (magic ", int(magic), ", version ", int(version),
                 "); are all ranks the same mixserve build?");
  return r.get<uint8_t>();
}

constexpr uint8_t kRankInfoKind = 0x80;

}  // namespace

std::vector<uint8_t> encode_command(const CommandMessage& m) {
  Writer w;
  put_header(w, static_cast<uint8_t>(m.command));
  switch (m.command) {
    case Command::kAllocateKvCache:
      w.put(m.kv.num_blocks);
      w.put(m.kv.block_size);
      break;
    case Command::kForward:
    case Command::kForwardAndSample: {
      const BatchPlan& p = m.plan;
      w.put_vector(p.token_ids);
      w.put_vector(p.positions);
      w.put_vector(p.seq_offsets);
      w.put_vector(p.context_lens);
      w.put_vector(p.block_tables);
      w.put(p.max_blocks_per_seq);
      w.put_vector(p.slot_mapping);
      w.put_vector(p.logits_rows);
      if (m.command == Command::kForwardAndSample) {
        w.put_vector(m.sampling.rows);
        w.put_vector(m.sampling.entry_offsets);
        w.put_vector(m.sampling.entries);
      }
      break;
    }
    case Command::kShutdown:
      break;
  }
  return w.take();
}

CommandMessage decode_command(const std::vector<uint8_t>& bytes) {
  constexpr const char* kWhat = "rank command";
  Reader r(bytes, kWhat);
  CommandMessage m;
  const uint8_t kind = get_header(r, kWhat);
  switch (kind) {
    case static_cast<uint8_t>(Command::kAllocateKvCache):
      m.command = Command::kAllocateKvCache;
      m.kv.num_blocks = r.get<int32_t>();
      m.kv.block_size = r.get<int32_t>();
      break;
    case static_cast<uint8_t>(Command::kForward):
    case static_cast<uint8_t>(Command::kForwardAndSample): {
      m.command = static_cast<Command>(kind);
      BatchPlan& p = m.plan;
      p.token_ids = r.get_vector<int32_t>();
      p.positions = r.get_vector<int32_t>();
      p.seq_offsets = r.get_vector<int32_t>();
      p.context_lens = r.get_vector<int32_t>();
      p.block_tables = r.get_vector<int32_t>();
      p.max_blocks_per_seq = r.get<int32_t>();
      p.slot_mapping = r.get_vector<int64_t>();
      p.logits_rows = r.get_vector<int32_t>();
      if (m.command == Command::kForwardAndSample) {
        m.sampling.rows = r.get_vector<SamplingRow>();
        m.sampling.entry_offsets = r.get_vector<int32_t>();
        m.sampling.entries = r.get_vector<PenaltyEntry>();
      }
      break;
    }
    case static_cast<uint8_t>(Command::kShutdown):
      m.command = Command::kShutdown;
      break;
    default:
      throw_error(kWhat, ": unknown command ", int(kind));
  }
  r.finish();
  return m;
}

std::vector<uint8_t> encode_rank_info(const RankInfo& info) {
  Writer w;
  put_header(w, kRankInfoKind);
  w.put(info);
  return w.take();
}

RankInfo decode_rank_info(const std::vector<uint8_t>& bytes) {
  constexpr const char* kWhat = "rank info";
  Reader r(bytes, kWhat);
  MIXSERVE_CHECK(get_header(r, kWhat) == kRankInfoKind, kWhat, ": wrong message kind");
  const RankInfo info = r.get<RankInfo>();
  r.finish();
  return info;
}

}  // namespace mixserve::dist
