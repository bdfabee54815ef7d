// `mixserve chat-template`: renders a chat template over a conversation and prints the exact
// text (no trailing newline added), for checking templates and for the node reference tests.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/command.h"
#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace mixserve::cli {
namespace {

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  MIXSERVE_CHECK(in, what, " ", path, ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Args {
  std::string template_file, model_dir, messages_file, context_file;
  std::string bos, eos;
  bool add_generation_prompt = false;
};

const CommandRegistrar kChatTemplate(
    "chat-template", "Render a chat template over a conversation (prints the exact text)",
    [](CLI::App& sub) -> std::function<int()> {
      auto args = std::make_shared<Args>();
      auto* tmpl = sub.add_option("--template", args->template_file, "Jinja template file");
      auto* model = sub.add_option("--model", args->model_dir,
                                   "Model folder (reads tokenizer_config.json)");
      tmpl->excludes(model);
      sub.add_option("--messages", args->messages_file,
                     "JSON file: an array of {\"role\", \"content\"} messages")
          ->required();
      sub.add_flag("--add-generation-prompt", args->add_generation_prompt,
                   "Open an assistant turn at the end");
      auto* bos = sub.add_option("--bos-token", args->bos, "BOS token string");
      auto* eos = sub.add_option("--eos-token", args->eos, "EOS token string");
      sub.add_option("--context", args->context_file,
                     "JSON file: an object of extra template variables (e.g. tools)");
      return [args, bos, eos] {
        MIXSERVE_CHECK(!args->template_file.empty() || !args->model_dir.empty(),
                       "chat-template: pass --template FILE or --model DIR");
        ChatTemplateOptions opts;
        std::string source;
        if (!args->model_dir.empty()) {
          ChatTemplateConfig cfg = load_chat_template_config(args->model_dir);
          source = std::move(cfg.chat_template);
          opts.bos_token = cfg.bos_token;
          opts.eos_token = cfg.eos_token;
        } else {
          source = read_file(args->template_file, "--template");
        }
        if (bos->count() > 0) opts.bos_token = args->bos;
        if (eos->count() > 0) opts.eos_token = args->eos;
        opts.add_generation_prompt = args->add_generation_prompt;
        if (!args->context_file.empty()) {
          opts.extra_context_json = read_file(args->context_file, "--context");
        }
        const std::string messages = read_file(args->messages_file, "--messages");
        const std::string out = render_chat_template(source, messages, opts);
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
        return 0;
      };
    });

}  // namespace
}  // namespace mixserve::cli
