// `mixserve generate`: one prompt through the engine, text streamed to stdout, or one JSON
// object with --json (the contract in the README: prompt_token_ids, token_ids, text,
// finish_reason, top_logprobs).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>
#include <string>

#include "cli/command.h"
#include "cli/engine_flags.h"
#include "util/error.h"

namespace mixserve::cli {
namespace {

struct GenerateFlags {
  EngineFlags engine;
  std::string prompt;
  int32_t max_tokens = 64;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = -1;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  std::optional<uint64_t> seed;
  int32_t top_logprobs = 0;
  bool ignore_eos = false;
  bool json = false;
  std::vector<std::string> stop;
};

int run_generate(const GenerateFlags& f) {
  EngineBundle bundle = make_engine(f.engine);
  if (!bundle.engine) return 0;  // a worker rank of a multi-process launch: done
  MIXSERVE_CHECK(bundle.tokenizer != nullptr, "--model ", f.engine.backend.model,
                 ": generate needs a tokenizer (tokenizer.json in the model folder)");

  Request req;
  req.id = "generate-0";
  req.prompt_ids = bundle.tokenizer->encode(f.prompt, /*add_special_tokens=*/true);
  SamplingParams& p = req.params;
  p.max_tokens = f.max_tokens;
  p.temperature = f.temperature;
  p.top_p = f.top_p;
  p.top_k = f.top_k;
  p.min_p = f.min_p;
  p.repetition_penalty = f.repetition_penalty;
  p.seed = f.seed;
  p.ignore_eos = f.ignore_eos;
  p.stop = f.stop;
  // Log-probabilities are only computed when asked for; the engine's -1 means none.
  p.logprobs = f.json && f.top_logprobs > 0 ? f.top_logprobs : -1;
  const std::vector<int32_t> prompt_ids = req.prompt_ids;

  if (!f.json) {
    // Stream text as the engine produces it.
    bundle.engine->start();
    std::shared_ptr<TokenStream> stream = bundle.engine->submit(std::move(req));
    std::string finish;
    while (std::optional<StreamEvent> ev = stream->next()) {
      std::fwrite(ev->text.data(), 1, ev->text.size(), stdout);
      std::fflush(stdout);
      if (ev->finish_reason) finish = *ev->finish_reason;
    }
    std::printf("\n");
    bundle.engine->shutdown(/*drain=*/false);
    if (finish != "stop" && finish != "length") throw_error("generation failed: ", finish);
    return 0;
  }

  std::vector<Request> reqs;
  reqs.push_back(std::move(req));
  std::vector<GenerateResult> results = bundle.engine->generate(std::move(reqs));
  const SampleOutput& out = results.at(0).samples.at(0);
  if (out.finish_reason != "stop" && out.finish_reason != "length") {
    throw_error("generation failed: ", out.finish_reason);
  }
  nlohmann::json j;
  j["prompt_token_ids"] = prompt_ids;
  j["token_ids"] = out.token_ids;
  j["text"] = out.text;
  j["finish_reason"] = out.finish_reason;
  nlohmann::json tops = nlohmann::json::array();
  for (const TokenLogprobs& lp : out.logprobs) {
    nlohmann::json step = nlohmann::json::array();
    for (const TopLogprob& t : lp.top) step.push_back({{"id", t.id}, {"logprob", t.logprob}});
    tops.push_back(std::move(step));
  }
  j["top_logprobs"] = std::move(tops);
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::printf("%s\n", text.c_str());
  return 0;
}

const CommandRegistrar kGenerate(
    "generate", "Generate a completion for one prompt",
    [](CLI::App& sub) -> std::function<int()> {
      auto f = std::make_shared<GenerateFlags>();
      f->engine.add_to(sub);
      sub.add_option("--prompt", f->prompt, "Prompt text")->required();
      sub.add_option("--max-tokens", f->max_tokens, "Tokens to generate at most")
          ->check(CLI::PositiveNumber)
          ->capture_default_str();
      sub.add_option("--temperature", f->temperature, "0 = greedy")->capture_default_str();
      sub.add_option("--top-p", f->top_p, "Nucleus sampling mass")->capture_default_str();
      sub.add_option("--top-k", f->top_k, "Keep the K most likely tokens (-1 = all)")
          ->capture_default_str();
      sub.add_option("--min-p", f->min_p, "Drop tokens below min_p × the top probability");
      sub.add_option("--repetition-penalty", f->repetition_penalty, "1 = off");
      sub.add_option("--seed", f->seed, "Sampling seed (same seed, same output)");
      sub.add_option("--top-logprobs", f->top_logprobs,
                     "With --json: the K most likely tokens of every step")
          ->check(CLI::Range(0, SamplingParams::kMaxLogprobs));
      sub.add_option("--stop", f->stop, "Stop string (repeatable)");
      sub.add_flag("--ignore-eos", f->ignore_eos, "Keep generating after the EOS token");
      sub.add_flag("--json", f->json, "Print one JSON object instead of streaming text");
      return [f] { return run_generate(*f); };
    });

}  // namespace
}  // namespace mixserve::cli
