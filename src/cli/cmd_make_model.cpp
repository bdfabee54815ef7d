// `mixserve make-model`: writes a deterministic tiny checkpoint (config, weights, tokenizer).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "model/make_model.h"
#include "model/presets.h"

namespace mixserve::cli {
namespace {

std::string preset_help() {
  std::string s = "Model shape: one of ";
  for (const std::string& n : preset_names()) s += n + " ";
  return s + "(overrides: PRESET?layers=N&experts=E...)";
}

const CommandRegistrar kMakeModel(
    "make-model", "Write a deterministic random-weight checkpoint of a preset shape",
    [](CLI::App& sub) -> std::function<int()> {
      struct Args {
        MakeModelOptions options;
        std::string dtype = "bf16";
        std::string out, tokenizer_dir;
      };
      auto a = std::make_shared<Args>();
      sub.add_option("--preset", a->options.preset, preset_help())->capture_default_str();
      sub.add_option("--out", a->out, "Folder to write (created if missing)")->required();
      sub.add_option("--shards", a->options.shards, "Number of safetensors files")
          ->capture_default_str();
      sub.add_option("--dtype", a->dtype, "Weight dtype: bf16, f16 or f32")->capture_default_str();
      sub.add_option("--seed", a->options.seed, "Random seed")->capture_default_str();
      sub.add_option("--tokenizer-dir", a->tokenizer_dir,
                     "Folder with tokenizer.json and tokenizer_config.json "
                     "(default: the bundled Mixtral tokenizer)");
      return [a] {
        a->options.dtype = parse_weight_dtype(a->dtype);
        a->options.out = a->out;
        a->options.tokenizer_dir = a->tokenizer_dir;
        const MadeModel m = make_model(a->options);
        std::printf("wrote %s: %s, %d layers, %d experts (top-%d), %zu tensors, %.1f MB in %zu file(s)\n",
                    a->out.c_str(), m.config.model_type.c_str(), m.config.num_hidden_layers,
                    m.config.num_local_experts, m.config.num_experts_per_tok, m.num_tensors,
                    static_cast<double>(m.weight_bytes) / 1e6, m.weight_files.size());
        return 0;
      };
    });

}  // namespace
}  // namespace mixserve::cli
