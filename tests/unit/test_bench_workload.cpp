// Workloads: length specs, seeded prompts that avoid special ids, text prompts, JSONL datasets.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "bench/workload.h"
#include "temp_dir.h"
#include "util/error.h"

namespace mixserve::bench {
namespace {

TEST(BenchWorkload, ParsesLengthSpecs) {
  LengthSpec s = LengthSpec::parse("128", "--input-len");
  EXPECT_EQ(s.kind, LengthSpec::Kind::kFixed);
  EXPECT_EQ(s.a, 128);
  s = LengthSpec::parse("normal:512:64", "--input-len");
  EXPECT_EQ(s.kind, LengthSpec::Kind::kNormal);
  EXPECT_EQ(s.a, 512);
  EXPECT_EQ(s.b, 64);
  EXPECT_EQ(s.to_string(), "normal:512:64");
  s = LengthSpec::parse("uniform:10:20", "--output-len");
  EXPECT_EQ(s.kind, LengthSpec::Kind::kUniform);
  for (const char* bad : {"", "0", "abc", "12x", "normal:5", "gamma:1:2", "uniform:20:10",
                          "uniform:0:5", "normal:10:-1"}) {
    EXPECT_THROW(LengthSpec::parse(bad, "--input-len"), Error) << bad;
  }
  try {
    LengthSpec::parse("gamma:1:2", "--output-len");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--output-len"), std::string::npos);
  }
}

// Runs of a rate sweep must not hit the server's prefix cache with an earlier run's prompts.
TEST(BenchWorkload, FreshPrefixesKeepLengthsAndShareNoPrefix) {
  WorkloadSpec spec;
  spec.num_requests = 50;
  spec.input = LengthSpec::parse("uniform:1:40", "--input-len");
  spec.output = LengthSpec::parse("uniform:1:9", "--output-len");
  spec.vocab_size = 100;
  const std::vector<WorkloadItem> items = make_workload(spec);
  std::set<int32_t> firsts;
  for (const auto& it : items) firsts.insert(it.prompt_ids[0]);
  for (int run : {1, 2, 3}) {
    const std::vector<WorkloadItem> fresh = with_fresh_prefixes(items, run, spec.vocab_size);
    ASSERT_EQ(fresh.size(), items.size());
    for (size_t k = 0; k < items.size(); ++k) {
      EXPECT_EQ(fresh[k].input_len, items[k].input_len);
      EXPECT_EQ(fresh[k].output_len, items[k].output_len);
      ASSERT_EQ(fresh[k].prompt_ids.size(), items[k].prompt_ids.size());
      EXPECT_NE(fresh[k].prompt_ids[0], items[k].prompt_ids[0]) << "run " << run;
      EXPECT_GE(fresh[k].prompt_ids[0], 3);
      EXPECT_LT(fresh[k].prompt_ids[0], 100);
      EXPECT_TRUE(std::equal(fresh[k].prompt_ids.begin() + 1, fresh[k].prompt_ids.end(),
                             items[k].prompt_ids.begin() + 1));
    }
  }
  WorkloadItem text;
  text.prompt_text = "hello";
  EXPECT_EQ(with_fresh_prefixes({text}, 2, 100)[0].prompt_text, "[run 2] hello");
  EXPECT_THROW(with_fresh_prefixes(items, 1, 4), Error);
}

TEST(BenchWorkload, FixedLengthTokenPromptsAreExactSeededAndAvoidSpecialIds) {
  WorkloadSpec spec;
  spec.input = LengthSpec::parse("37", "x");
  spec.output = LengthSpec::parse("5", "x");
  spec.num_requests = 17;
  spec.vocab_size = 12;
  spec.avoid_ids = default_avoid_ids(1, {2, 11});  // {0, 1, 2, 11}
  spec.seed = 7;
  const auto a = make_workload(spec);
  ASSERT_EQ(a.size(), 17u);
  std::set<int32_t> seen;
  for (const WorkloadItem& it : a) {
    EXPECT_EQ(it.prompt_ids.size(), 37u);
    EXPECT_EQ(it.input_len, 37);
    EXPECT_EQ(it.output_len, 5);
    EXPECT_TRUE(it.prompt_text.empty());
    seen.insert(it.prompt_ids.begin(), it.prompt_ids.end());
  }
  EXPECT_EQ(seen, (std::set<int32_t>{3, 4, 5, 6, 7, 8, 9, 10}));  // every allowed id, no other
  EXPECT_EQ(make_workload(spec)[16].prompt_ids, a[16].prompt_ids);  // same seed, same prompts
  spec.seed = 8;
  EXPECT_NE(make_workload(spec)[0].prompt_ids, a[0].prompt_ids);
  EXPECT_NE(a[0].prompt_ids, a[1].prompt_ids);  // no shared prefixes for the prefix cache
  spec.avoid_ids = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  EXPECT_THROW(make_workload(spec), Error);
}

TEST(BenchWorkload, DistributionsStayInRange) {
  WorkloadSpec spec;
  spec.input = LengthSpec::parse("uniform:3:6", "x");
  spec.output = LengthSpec::parse("normal:100:10", "x");
  spec.num_requests = 2000;
  const auto items = make_workload(spec);
  std::set<int32_t> inputs;
  double out_sum = 0;
  for (const WorkloadItem& it : items) {
    inputs.insert(it.input_len);
    EXPECT_EQ(int32_t(it.prompt_ids.size()), it.input_len);
    out_sum += it.output_len;
    EXPECT_GE(it.output_len, 1);
  }
  EXPECT_EQ(inputs, (std::set<int32_t>{3, 4, 5, 6}));  // both ends reached, nothing outside
  EXPECT_NEAR(out_sum / 2000.0, 100.0, 1.5);
}

TEST(BenchWorkload, TextPromptsHaveTheWordCount) {
  WorkloadSpec spec;
  spec.prompt_kind = PromptKind::kText;
  spec.input = LengthSpec::parse("25", "x");
  spec.num_requests = 3;
  for (const WorkloadItem& it : make_workload(spec)) {
    EXPECT_TRUE(it.prompt_ids.empty());
    std::istringstream words(it.prompt_text);
    std::string w;
    int n = 0;
    while (words >> w) {
      ++n;
      EXPECT_NE(std::find(prompt_words().begin(), prompt_words().end(), w), prompt_words().end());
    }
    EXPECT_EQ(n, 25);
  }
}

TEST(BenchWorkload, ReadsJsonlDatasetsAndCyclesThem) {
  testing::TempDir dir("bench_ds");
  const auto path = dir / "ds.jsonl";
  std::ofstream(path) << "{\"prompt\": \"hello world\", \"output_len\": 7}\n"
                         "\n"
                         "{\"prompt\": [5, 6, 7], \"max_tokens\": 3}\n"
                         "{\"prompt_token_ids\": [9, 9]}\n";
  WorkloadSpec spec;
  spec.dataset = path;
  spec.output = LengthSpec::parse("11", "x");
  spec.num_requests = 5;
  const auto items = make_workload(spec);
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items[0].prompt_text, "hello world");
  EXPECT_EQ(items[0].output_len, 7);
  EXPECT_EQ(items[1].prompt_ids, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(items[1].input_len, 3);
  EXPECT_EQ(items[1].output_len, 3);
  EXPECT_EQ(items[2].prompt_ids, (std::vector<int32_t>{9, 9}));
  EXPECT_EQ(items[2].output_len, 11);
  EXPECT_EQ(items[3].prompt_text, "hello world");  // cycled
}

TEST(BenchWorkload, DatasetErrorsNameTheLine) {
  testing::TempDir dir("bench_ds_bad");
  const auto path = dir / "bad.jsonl";
  std::ofstream(path) << "{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n";
  WorkloadSpec spec;
  spec.dataset = path;
  try {
    make_workload(spec);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "{\"prompt\": [1, -2]}\n";
  EXPECT_THROW(make_workload(spec), Error);
  std::ofstream(path) << "not json\n";
  EXPECT_THROW(make_workload(spec), Error);
  spec.dataset = dir / "missing.jsonl";
  EXPECT_THROW(make_workload(spec), Error);
}

}  // namespace
}  // namespace mixserve::bench
