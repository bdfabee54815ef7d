// `mixserve quantize`: writes an FP8 (E4M3, per-channel scales) copy of a checkpoint folder.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "model/quantize_checkpoint.h"
#include "util/error.h"

namespace mixserve::cli {
namespace {

const CommandRegistrar kQuantize(
    "quantize", "Write an FP8 checkpoint (E4M3 projections, per-channel scales) of a model",
    [](CLI::App& sub) -> std::function<int()> {
      struct Args {
        std::string model, out, activation_scheme = "dynamic";
      };
      auto a = std::make_shared<Args>();
      sub.add_option("--model", a->model, "BF16/FP16/F32 checkpoint folder")->required();
      sub.add_option("--out", a->out, "Folder to write (created if missing)")->required();
      sub.add_option("--activation-scheme", a->activation_scheme,
                     "dynamic: activations are quantized per token at run time (the only "
                     "scheme written; static input scales need calibration data)")
          ->check(CLI::IsMember({"dynamic"}))
          ->capture_default_str();
      return [a] {
        const QuantizeResult r = quantize_checkpoint(a->model, a->out);
        std::printf(
            "{\"quantized_tensors\":%d,\"copied_tensors\":%d,\"bytes\":%llu,\"files\":%d}\n",
            r.quantized_tensors, r.copied_tensors, static_cast<unsigned long long>(r.bytes_written),
            r.shards);
        return 0;
      };
    });

}  // namespace
}  // namespace mixserve::cli
