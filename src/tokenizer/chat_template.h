// Chat templates: renders a model's Jinja chat template (tokenizer_config.json "chat_template")
// over a conversation, byte for byte as @huggingface/jinja (the renderer of transformers.js)
// does, with transformers' settings (trim_blocks and lstrip_blocks on).
//
// Templates come from checkpoints, so they are treated as untrusted: there is no file or
// environment access (include/import/extends are rejected), and output size, loop iterations,
// macro recursion and nesting are bounded; exceeding a bound is a mixserve::Error, never a hang
// or a crash. The supported language is described in docs/chat-templates.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mixserve {

struct ChatMessage {
  std::string role;
  std::optional<std::string> content;  // nullopt renders as `none`
};

struct ChatTemplateLimits {
  size_t max_template_bytes = 1 << 20;
  size_t max_output_bytes = 1 << 20;      // also the largest string the template may build
  uint64_t max_loop_iterations = 1000000;  // total, over all loops, range() and macro calls
  int max_recursion_depth = 64;            // nested macro calls
  int max_nesting_depth = 256;             // nested blocks/brackets in the template source
};

struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  std::optional<std::string> bos_token;  // defined in the template only when set
  std::optional<std::string> eos_token;
  // A JSON object whose keys become template variables (e.g. {"tools": [...]}); keys override
  // messages/add_generation_prompt/bos_token/eos_token. Empty: none.
  std::string extra_context_json;
  ChatTemplateLimits limits;
};

// A parsed template, reusable across requests (render is const and thread-safe).
class ChatTemplate {
 public:
  // Throws mixserve::Error naming line:column on a syntax error or unsupported construct.
  explicit ChatTemplate(std::string source, const ChatTemplateLimits& limits = {});
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // messages_json: a JSON array of message objects ({"role", "content", ...any extra fields}).
  // Throws mixserve::Error on a template error (including raise_exception, whose message is
  // kept verbatim inside the error text) or a bound exceeded.
  std::string render(const std::string& messages_json, const ChatTemplateOptions& opts) const;
  std::string render(const std::vector<ChatMessage>& messages,
                     const ChatTemplateOptions& opts) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-shot helpers.
std::string render_chat_template(const std::string& tmpl, const std::string& messages_json,
                                 const ChatTemplateOptions& opts);
std::string render_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& opts);

// What a checkpoint's tokenizer_config.json says: the chat template (a string, or the
// list-of-named-templates form, where "default" is taken) and the BOS/EOS token strings.
struct ChatTemplateConfig {
  std::string chat_template;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};
ChatTemplateConfig load_chat_template_config(const std::filesystem::path& model_dir);

}  // namespace mixserve
