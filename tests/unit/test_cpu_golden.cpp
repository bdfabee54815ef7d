// The CPU backend against Hugging Face transformers (float32, eager attention): logits that
// tools/make_cpu_golden.py computed for make_random_cpu_weights(config, 7), committed in
// tests/golden/cpu_backend_hf.json.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cpu_test_support.h"

namespace mixserve {
namespace {

nlohmann::json load_golden() {
  const std::string path = std::string(MIXSERVE_SOURCE_DIR) + "/tests/golden/cpu_backend_hf.json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path;
  return nlohmann::json::parse(in);
}

// Same shapes as tools/make_cpu_golden.py's CASES.
ModelConfig golden_config(const std::string& name) {
  return name == "mixtral" ? cpu_test::moe_config() : [] {
    ModelConfig c = cpu_test::dense_config();
    c.sliding_window = 5;
    return c;
  }();
}

class CpuGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(CpuGolden, MatchesTransformersFloat32) {
  const nlohmann::json golden = load_golden()["cases"][GetParam()];
  const ModelConfig c = golden_config(GetParam());
  const std::vector<int> ids = golden["token_ids"].get<std::vector<int>>();
  const auto ref = golden["logits"].get<std::vector<std::vector<double>>>();
  const int T = static_cast<int>(ids.size());
  ASSERT_EQ(ref.size(), ids.size());
  ASSERT_EQ(ref[0].size(), size_t(c.vocab_size));
  // Once as one prefill, once token by token: both through shuffled 4-token blocks.
  for (bool decode : {false, true}) {
    CpuBackend backend(c, make_random_cpu_weights(c, 7), 2);
    backend.allocate_kv_cache({16, 4});
    cpu_test::PlanBuilder pb(4, 16, 42);
    const int s = pb.add(ids);
    std::vector<float> got;
    if (decode) {
      for (int t = 0; t < T; ++t) {
        const std::vector<float> row = cpu_test::run(backend, pb.step({{s, 1}}, true));
        got.insert(got.end(), row.begin(), row.end());
      }
    } else {
      got = cpu_test::run(backend, pb.step({{s, T}}, true));
    }
    for (int t = 0; t < T; ++t) {
      const double err = cpu_test::max_rel_error(
          std::span<const float>(got).subspan(size_t(t) * c.vocab_size, c.vocab_size), ref[t]);
      EXPECT_LT(err, 1e-5) << (decode ? "decode" : "prefill") << " position " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, CpuGolden, ::testing::Values("mixtral", "mistral_window"));

}  // namespace
}  // namespace mixserve
