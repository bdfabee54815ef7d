// The rank command encoding: every field survives a round trip, and malformed bytes are
// errors rather than wrong steps.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "dist/command_codec.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

BatchPlan sample_plan() {
  BatchPlan p;
  p.token_ids = {5, 9, 13, 2};
  p.positions = {0, 1, 2, 40};
  p.seq_offsets = {0, 3, 4};
  p.context_lens = {3, 41};
  p.max_blocks_per_seq = 3;
  p.block_tables = {7, -1, -1, 1, 4, 9};
  p.slot_mapping = {28, 29, 30, (int64_t{1} << 40) + 3};  // 64-bit slots survive
  p.logits_rows = {2, 3};
  return p;
}

void expect_same(const BatchPlan& a, const BatchPlan& b) {
  EXPECT_EQ(a.token_ids, b.token_ids);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.seq_offsets, b.seq_offsets);
  EXPECT_EQ(a.context_lens, b.context_lens);
  EXPECT_EQ(a.block_tables, b.block_tables);
  EXPECT_EQ(a.max_blocks_per_seq, b.max_blocks_per_seq);
  EXPECT_EQ(a.slot_mapping, b.slot_mapping);
  EXPECT_EQ(a.logits_rows, b.logits_rows);
}

TEST(CommandCodec, ForwardRoundTrip) {
  CommandMessage m;
  m.command = Command::kForward;
  m.plan = sample_plan();
  const CommandMessage back = decode_command(encode_command(m));
  EXPECT_EQ(back.command, Command::kForward);
  expect_same(back.plan, m.plan);
  EXPECT_TRUE(back.sampling.rows.empty());
}

TEST(CommandCodec, ForwardAndSampleRoundTrip) {
  CommandMessage m;
  m.command = Command::kForwardAndSample;
  m.plan = sample_plan();
  SamplingRow row;
  row.temperature = 0.7f;
  row.top_k = 40;
  row.top_p = 0.9f;
  row.min_p = 0.05f;
  row.repetition_penalty = 1.1f;
  row.presence_penalty = 0.5f;
  row.frequency_penalty = -0.25f;
  row.sample_index = 3;
  row.seed = 0xdeadbeefcafef00dull;
  row.draw_index = 123456789012345;
  row.logprobs = 5;
  m.sampling.rows = {row, SamplingRow{}};
  m.sampling.entry_offsets = {0, 2, 3};
  m.sampling.entries = {{5, 0, PenaltyEntry::kInHistory}, {9, 2, 3}, {2, 0, 2}};
  const CommandMessage back = decode_command(encode_command(m));
  EXPECT_EQ(back.command, Command::kForwardAndSample);
  expect_same(back.plan, m.plan);
  ASSERT_EQ(back.sampling.rows.size(), 2u);
  EXPECT_EQ(std::memcmp(&back.sampling.rows[0], &row, sizeof(row)), 0);
  EXPECT_EQ(back.sampling.rows[0].seed, row.seed);
  EXPECT_EQ(back.sampling.entry_offsets, m.sampling.entry_offsets);
  ASSERT_EQ(back.sampling.entries.size(), 3u);
  EXPECT_EQ(back.sampling.entries[1].id, 9);
  EXPECT_EQ(back.sampling.entries[1].output_count, 2);
  EXPECT_EQ(back.sampling.entries[1].flags, 3u);
}

TEST(CommandCodec, AllocateAndShutdown) {
  CommandMessage m;
  m.command = Command::kAllocateKvCache;
  m.kv = {1234, 32};
  const CommandMessage back = decode_command(encode_command(m));
  EXPECT_EQ(back.command, Command::kAllocateKvCache);
  EXPECT_EQ(back.kv.num_blocks, 1234);
  EXPECT_EQ(back.kv.block_size, 32);
  CommandMessage s;
  s.command = Command::kShutdown;
  EXPECT_EQ(decode_command(encode_command(s)).command, Command::kShutdown);
}

TEST(CommandCodec, EmptyPlanRoundTrip) {
  CommandMessage m;
  m.command = Command::kForward;
  m.plan.seq_offsets = {0};
  const CommandMessage back = decode_command(encode_command(m));
  expect_same(back.plan, m.plan);
}

TEST(CommandCodec, MalformedBytesAreErrors) {
  CommandMessage m;
  m.command = Command::kForward;
  m.plan = sample_plan();
  const std::vector<uint8_t> good = encode_command(m);
  // Every truncation fails (never reads past the end, never yields a plan).
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + n);
    EXPECT_THROW(decode_command(cut), Error) << n;
  }
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_THROW(decode_command(longer), Error);
  std::vector<uint8_t> bad_magic = good;
  bad_magic[0] ^= 0xff;
  EXPECT_THROW(decode_command(bad_magic), Error);
  std::vector<uint8_t> bad_kind = good;
  bad_kind[2] = 99;
  try {
    decode_command(bad_kind);
    FAIL() << "unknown command decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown command 99"), std::string::npos);
  }
  // A vector count far beyond the message is caught before any allocation.
  std::vector<uint8_t> huge = good;
  const uint64_t big = uint64_t{1} << 60;
  std::memcpy(huge.data() + 3, &big, sizeof(big));
  EXPECT_THROW(decode_command(huge), Error);
}

TEST(CommandCodec, RankInfoRoundTrip) {
  RankInfo info;
  info.kv_bytes_per_token = 65536;
  info.offered_kv_blocks = 77;
  info.offered_block_size = 16;
  info.vocab_size = 32000;
  info.hidden_size = 4096;
  info.num_layers = 32;
  const RankInfo back = decode_rank_info(encode_rank_info(info));
  EXPECT_EQ(back.kv_bytes_per_token, 65536u);
  EXPECT_EQ(back.offered_kv_blocks, 77);
  EXPECT_EQ(back.offered_block_size, 16);
  EXPECT_EQ(back.vocab_size, 32000);
  EXPECT_EQ(back.hidden_size, 4096);
  EXPECT_EQ(back.num_layers, 32);
  CommandMessage m;  // a command is not a rank info
  EXPECT_THROW(decode_rank_info(encode_command(m)), Error);
}

}  // namespace
}  // namespace mixserve::dist
