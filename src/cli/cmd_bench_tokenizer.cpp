// `mixserve bench tokenizer`: encode and decode speed on one thread, in MB/s of text.
// Default input: the longest entry of tests/data/tokenizer_corpus.json (~100 KB of English
// prose). With no pre-tokenizer (Mixtral) the whole text is a single BPE word, the worst case
// for the merge loop.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace mixserve::cli {

std::shared_ptr<const Tokenizer> load_cli_tokenizer(const std::string& model);

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MIXSERVE_CHECK(in.good(), path, ": cannot open");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::string default_text() {
  const std::string path = std::string(MIXSERVE_SOURCE_DIR) + "/tests/data/tokenizer_corpus.json";
  const json corpus = json::parse(read_all(path));
  std::string longest;
  for (const json& s : corpus) {
    if (s.is_string() && s.get<std::string>().size() > longest.size())
      longest = s.get<std::string>();
  }
  MIXSERVE_CHECK(!longest.empty(), path, ": no text entries");
  return longest;
}

struct Timing {
  double best_s = 1e30, median_s = 0;
};

template <typename F>
Timing time_it(int iters, F&& f) {
  std::vector<double> s;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return {s.front(), s[s.size() / 2]};
}

struct Args {
  std::string model, file, out;
  int iters = 10;
};

int run(const Args& a) {
  const auto tok = load_cli_tokenizer(a.model);
  const std::string text = a.file.empty() ? default_text() : read_all(a.file);
  // The first call fills the tokenizer's per-thread word cache (timed on its own: a fresh
  // process or a new vocabulary pays this once); the timed repetitions then run warm.
  const auto t0 = Clock::now();
  std::vector<int32_t> ids = tok->encode(text, false);
  const double cold_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::string decoded = tok->decode(ids, false);
  const Timing enc = time_it(a.iters, [&] { ids = tok->encode(text, false); });
  const Timing dec = time_it(a.iters, [&] { decoded = tok->decode(ids, false); });
  const double mb = static_cast<double>(text.size()) / 1e6;
  const double out_mb = static_cast<double>(decoded.size()) / 1e6;
  json report = {
      {"input", a.file.empty() ? "tests/data/tokenizer_corpus.json (longest entry)" : a.file},
      {"model", a.model},
      {"threads", 1},
      {"iterations", a.iters},
      {"bytes", text.size()},
      {"tokens", ids.size()},
      {"encode_mb_per_s", mb / enc.median_s},
      {"encode_cold_mb_per_s", mb / cold_s},
      {"encode_best_mb_per_s", mb / enc.best_s},
      {"encode_tokens_per_s", static_cast<double>(ids.size()) / enc.median_s},
      {"decode_mb_per_s", out_mb / dec.median_s},
      {"decode_best_mb_per_s", out_mb / dec.best_s},
      {"decode_tokens_per_s", static_cast<double>(ids.size()) / dec.median_s},
      {"round_trip_exact", decoded == text},
  };
  std::printf("tokenizer bench: %zu bytes -> %zu tokens, one thread, median of %d\n", text.size(),
              ids.size(), a.iters);
  std::printf("  encode %8.2f MB/s  (%.0f tokens/s); first call (cold cache) %.2f MB/s\n",
              mb / enc.median_s, static_cast<double>(ids.size()) / enc.median_s, mb / cold_s);
  std::printf("  decode %8.2f MB/s  (%.0f tokens/s)\n", out_mb / dec.median_s,
              static_cast<double>(ids.size()) / dec.median_s);
  if (!a.out.empty()) {
    std::ofstream f(a.out);
    MIXSERVE_CHECK(f.good(), "--out ", a.out, ": cannot write");
    f << report.dump(2) << '\n';
  }
  return 0;
}

const CommandRegistrar kBenchTokenizer(
    "bench tokenizer", "Tokenizer encode/decode speed (MB/s, one thread)",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<Args>();
      sub.add_option("--model", a->model, "Model folder with tokenizer.json, or synthetic:PRESET")
          ->required();
      sub.add_option("--file", a->file, "Text file to measure (default: the corpus' long text)");
      sub.add_option("--out", a->out, "Write the JSON report here");
      sub.add_option("--iters", a->iters, "Timed repetitions (the median is reported)")
          ->check(CLI::Range(1, 100000));
      return [a] { return run(*a); };
    });

}  // namespace
}  // namespace mixserve::cli
