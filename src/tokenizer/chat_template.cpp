#include "tokenizer/chat_template.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"
#include "util/error.h"

namespace mixserve {
namespace {

using json = nlohmann::ordered_json;
using jinja::Value;

// A canonical array index ("0", "17"; not "01"): JavaScript objects list these keys first, in
// numeric order, whatever order the JSON text had.
bool is_array_index(const std::string& k) {
  if (k.empty() || k.size() > 10) return false;
  if (k.size() > 1 && k[0] == '0') return false;
  for (char c : k) if (c < '0' || c > '9') return false;
  return std::stoull(k) < 4294967295ULL;
}

// JSON.parse + convertToRuntimeValues: integral numbers become integers (1.0 too).
Value from_json(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return Value::null();
    case json::value_t::boolean: return Value::boolean(j.get<bool>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: {
      const double d = j.get<double>();
      return std::floor(d) == d && std::isfinite(d) ? Value::integer(d) : Value::floating(d);
    }
    case json::value_t::string: return Value::string(j.get<std::string>());
    case json::value_t::array: {
      jinja::Array items;
      for (const auto& x : j) items.push_back(from_json(x));
      return Value::array(std::move(items));
    }
    case json::value_t::object: {
      Value out = Value::object();
      std::vector<std::pair<unsigned long long, const std::string*>> index_keys;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (is_array_index(it.key())) index_keys.emplace_back(std::stoull(it.key()), &it.key());
      }
      std::sort(index_keys.begin(), index_keys.end());
      for (const auto& [n, k] : index_keys) out.obj->set(*k, from_json(j.at(*k)));
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!is_array_index(it.key())) out.obj->set(it.key(), from_json(it.value()));
      }
      return out;
    }
    default: break;
  }
  throw_error("unsupported JSON value in chat template input");
}

json parse_json(const std::string& text, const char* what) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw_error(what, ": invalid JSON (", e.what(), ")");
  }
}

}  // namespace

struct ChatTemplate::Impl {
  std::string source;
  ChatTemplateLimits limits;
  jinja::NodePtr program;
};

ChatTemplate::ChatTemplate(std::string source, const ChatTemplateLimits& limits)
    : impl_(std::make_unique<Impl>()) {
  MIXSERVE_CHECK(source.size() <= limits.max_template_bytes, "chat template is ",
                 source.size(), " bytes, over the limit of ", limits.max_template_bytes);
  impl_->source = std::move(source);
  impl_->limits = limits;
  const auto tokens = jinja::tokenize(impl_->source);
  impl_->program = jinja::parse(impl_->source, tokens, limits.max_nesting_depth);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

namespace {

std::string render_values(const std::string& source, const jinja::Node& program,
                          const ChatTemplateLimits& limits, Value messages,
                          const ChatTemplateOptions& opts) {
  jinja::Limits run_limits;
  run_limits.max_output_bytes = limits.max_output_bytes;
  run_limits.max_loop_iterations = limits.max_loop_iterations;
  run_limits.max_recursion_depth = limits.max_recursion_depth;
  jinja::Interpreter interpreter(source, run_limits);
  jinja::Env globals(nullptr);
  interpreter.install_globals(globals);
  // The variables transformers.js passes, in its order; later keys override earlier ones.
  std::vector<std::pair<std::string, Value>> context;
  auto put = [&](const std::string& k, Value v) {
    for (auto& [key, val] : context) {
      if (key == k) {
        val = std::move(v);
        return;
      }
    }
    context.emplace_back(k, std::move(v));
  };
  put("messages", std::move(messages));
  put("add_generation_prompt", Value::boolean(opts.add_generation_prompt));
  if (opts.bos_token) put("bos_token", Value::string(*opts.bos_token));
  if (opts.eos_token) put("eos_token", Value::string(*opts.eos_token));
  if (!opts.extra_context_json.empty()) {
    const json extra = parse_json(opts.extra_context_json, "chat template extra context");
    MIXSERVE_CHECK(extra.is_object(), "chat template extra context must be a JSON object");
    for (auto it = extra.begin(); it != extra.end(); ++it) put(it.key(), from_json(it.value()));
  }
  for (auto& [k, v] : context) {
    MIXSERVE_CHECK(!globals.vars.count(k) && k != "namespace",
                   "chat template variable '", k, "' would shadow a builtin; rename it");
    globals.vars[k] = std::move(v);
  }
  return interpreter.render(program, globals);
}

}  // namespace

std::string ChatTemplate::render(const std::string& messages_json,
                                 const ChatTemplateOptions& opts) const {
  const json j = parse_json(messages_json, "chat messages");
  MIXSERVE_CHECK(j.is_array(), "chat messages must be a JSON array of {\"role\", \"content\"} "
                               "objects");
  return render_values(impl_->source, *impl_->program, impl_->limits, from_json(j), opts);
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& opts) const {
  jinja::Array items;
  for (const ChatMessage& m : messages) {
    Value msg = Value::object();
    msg.obj->set("role", Value::string(m.role));
    msg.obj->set("content", m.content ? Value::string(*m.content) : Value::null());
    items.push_back(std::move(msg));
  }
  return render_values(impl_->source, *impl_->program, impl_->limits,
                       Value::array(std::move(items)), opts);
}

std::string render_chat_template(const std::string& tmpl, const std::string& messages_json,
                                 const ChatTemplateOptions& opts) {
  return ChatTemplate(tmpl, opts.limits).render(messages_json, opts);
}

std::string render_chat_template(const std::string& tmpl, const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& opts) {
  return ChatTemplate(tmpl, opts.limits).render(messages, opts);
}

ChatTemplateConfig load_chat_template_config(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "tokenizer_config.json";
  std::ifstream in(path, std::ios::binary);
  MIXSERVE_CHECK(in, path.string(), ": cannot open (does the model folder have one?)");
  std::stringstream ss;
  ss << in.rdbuf();
  const json cfg = parse_json(ss.str(), path.string().c_str());
  ChatTemplateConfig out;
  MIXSERVE_CHECK(cfg.contains("chat_template"), path.string(),
                 ": no chat_template (this model has no chat format; pass --template FILE)");
  const json& t = cfg["chat_template"];
  if (t.is_string()) {
    out.chat_template = t.get<std::string>();
  } else if (t.is_array()) {
    bool found = false;
    for (const json& e : t) {
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
          e["template"].is_string()) {
        out.chat_template = e["template"].get<std::string>();
        found = true;
      }
    }
    MIXSERVE_CHECK(found, path.string(), ": chat_template list has no template named 'default'");
  } else {
    throw_error(path.string(), ": chat_template must be a string or a list of named templates");
  }
  auto token = [&](const char* key) -> std::optional<std::string> {
    if (!cfg.contains(key)) return std::nullopt;
    const json& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) {
      return v["content"].get<std::string>();  // AddedToken form
    }
    return std::nullopt;
  };
  out.bos_token = token("bos_token");
  out.eos_token = token("eos_token");
  return out;
}

}  // namespace mixserve
