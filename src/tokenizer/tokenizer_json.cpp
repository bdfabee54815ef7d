// Loading: tokenizer.json (+ tokenizer_config.json, generation_config.json,
// chat_template.jinja) into an HfTokenizerSpec. Every unsupported step is an error that names
// the field, so a tokenizer is never run half-understood.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/transformers_llama.h"
#include "util/error.h"

namespace mixserve {
namespace {

using nlohmann::json;
using namespace tokenizer_detail;

json parse_json(const std::string& text, const std::string& where) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw_error(where, ": invalid JSON (", e.what(), ")");
  }
}

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

bool get_bool(const json& obj, const char* key, bool fallback, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return fallback;
  MIXSERVE_CHECK(it->is_boolean(), where, ".", key, " must be true or false");
  return it->get<bool>();
}

std::optional<bool> get_optional_bool(const json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  return get_bool(obj, key, false, where);
}

std::string get_string(const json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  MIXSERVE_CHECK(it != obj.end() && it->is_string(), where, ".", key, " must be a string");
  return it->get<std::string>();
}

// A Replace step's pattern: {"String": "x"} only.
std::string string_pattern(const json& step, const std::string& where) {
  const auto it = step.find("pattern");
  MIXSERVE_CHECK(it != step.end() && it->is_object(), where, ".pattern missing");
  MIXSERVE_CHECK(!it->contains("Regex"), where,
                 ".pattern: Regex patterns are not supported (only {\"String\": ...})");
  const std::string s = get_string(*it, "String", where + ".pattern");
  MIXSERVE_CHECK(!s.empty(), where, ".pattern.String must not be empty");
  return s;
}

void add_normalizer(const json& n, const std::string& where, std::vector<NormalizerStep>& out) {
  if (n.is_null()) return;
  const std::string type = get_string(n, "type", where);
  if (type == "Sequence") {
    const json& list = n.at("normalizers");
    for (size_t i = 0; i < list.size(); ++i) {
      add_normalizer(list[i], where + ".normalizers[" + std::to_string(i) + "]", out);
    }
  } else if (type == "Prepend") {
    out.push_back({NormalizerStep::Kind::kPrepend, "", get_string(n, "prepend", where)});
  } else if (type == "Replace") {
    out.push_back({NormalizerStep::Kind::kReplace, string_pattern(n, where),
                   get_string(n, "content", where)});
  } else {
    throw_error(where, ": normalizer type \"", type,
                "\" is not supported (supported: Prepend, Replace, Sequence)");
  }
}

PreTokenizer::Prepend prepend_scheme(const json& obj, const std::string& where) {
  if (const auto it = obj.find("prepend_scheme"); it != obj.end() && !it->is_null()) {
    const std::string s = it->get<std::string>();
    if (s == "always") return PreTokenizer::Prepend::kAlways;
    if (s == "first") return PreTokenizer::Prepend::kFirst;
    if (s == "never") return PreTokenizer::Prepend::kNever;
    throw_error(where, ".prepend_scheme \"", s, "\" is not one of always, first, never");
  }
  // Files older than tokenizers 0.15 say add_prefix_space instead.
  return get_bool(obj, "add_prefix_space", true, where) ? PreTokenizer::Prepend::kAlways
                                                        : PreTokenizer::Prepend::kNever;
}

PreTokenizer parse_pre_tokenizer(const json& p, const std::string& where) {
  PreTokenizer out;
  if (p.is_null()) return out;
  const std::string type = get_string(p, "type", where);
  if (type == "Sequence" && p.at("pretokenizers").size() == 1) {
    return parse_pre_tokenizer(p.at("pretokenizers")[0], where + ".pretokenizers[0]");
  }
  MIXSERVE_CHECK(type == "Metaspace", where, ": pre_tokenizer type \"", type,
                 "\" is not supported (supported: null, Metaspace)");
  out.metaspace = true;
  out.replacement = get_string(p, "replacement", where);
  out.prepend = prepend_scheme(p, where);
  out.split = get_bool(p, "split", true, where);
  return out;
}

void add_decoder(const json& d, const std::string& where, std::vector<DecoderStep>& out) {
  const std::string type = get_string(d, "type", where);
  DecoderStep step{};
  if (type == "Sequence") {
    const json& list = d.at("decoders");
    for (size_t i = 0; i < list.size(); ++i) {
      add_decoder(list[i], where + ".decoders[" + std::to_string(i) + "]", out);
    }
    return;
  } else if (type == "Replace") {
    step.kind = DecoderStep::Kind::kReplace;
    step.pattern = string_pattern(d, where);
    step.content = get_string(d, "content", where);
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::kStrip;
    step.content = get_string(d, "content", where);
    step.start = d.value("start", size_t{0});
    step.stop = d.value("stop", size_t{0});
  } else if (type == "Metaspace") {
    step.kind = DecoderStep::Kind::kMetaspace;
    step.pattern = get_string(d, "replacement", where);
    step.strip_first = prepend_scheme(d, where) != PreTokenizer::Prepend::kNever;
  } else {
    throw_error(where, ": decoder type \"", type,
                "\" is not supported (supported: Sequence, Replace, ByteFallback, Fuse, Strip, "
                "Metaspace)");
  }
  out.push_back(std::move(step));
}

// transformers_llama: the model is rebuilt as transformers 5's LlamaTokenizer builds it, from
// the file's vocabulary and merges with fuse_unk and byte_fallback on.
std::unique_ptr<BpeModel> parse_model(const json& m, const std::string& where,
                                      bool transformers_llama) {
  MIXSERVE_CHECK(m.is_object(), where, " missing");
  const std::string type = m.value("type", std::string("BPE"));
  MIXSERVE_CHECK(type == "BPE", where, ".type \"", type,
                 "\" is not supported (mixserve reads BPE tokenizers of the Llama/Mistral family)");
  if (const auto it = m.find("dropout"); it != m.end() && !it->is_null()) {
    MIXSERVE_CHECK(it->get<double>() == 0.0, where,
                   ".dropout must be null (BPE dropout is a "
                   "training-time option)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = m.find(key);
    MIXSERVE_CHECK(it == m.end() || it->is_null() || it->get<std::string>().empty(), where, ".",
                   key, " is not supported (the Llama/Mistral family has none)");
  }
  const auto vocab_it = m.find("vocab");
  MIXSERVE_CHECK(vocab_it != m.end() && vocab_it->is_object(), where,
                 ".vocab must be an object of token -> id");
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(vocab_it->size());
  for (const auto& [piece, id] : vocab_it->items()) {
    MIXSERVE_CHECK(id.is_number_integer(), where, ".vocab[\"", piece, "\"] must be an integer id");
    vocab.emplace(piece, id.get<int32_t>());
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (const auto it = m.find("merges"); it != m.end() && !it->is_null()) {
    merges.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      if (e.is_string()) {
        const std::string s = e.get<std::string>();
        const size_t space = s.find(' ');
        MIXSERVE_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
                       where, ".merges[", i, "] \"", s,
                       "\" is not two tokens separated by a space");
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else {
        MIXSERVE_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(), where,
                       ".merges[", i, "] must be \"a b\" or [\"a\", \"b\"]");
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      }
    }
  }
  BpeOptions options;
  if (const auto it = m.find("unk_token"); it != m.end() && it->is_string()) {
    options.unk_token = it->get<std::string>();
  }
  options.fuse_unk = get_bool(m, "fuse_unk", false, where);
  options.byte_fallback = get_bool(m, "byte_fallback", false, where);
  options.ignore_merges = get_bool(m, "ignore_merges", false, where);
  if (transformers_llama) {
    options.fuse_unk = true;
    options.byte_fallback = true;
    options.ignore_merges = false;
  }
  return std::make_unique<BpeModel>(std::move(vocab), merges, std::move(options), where);
}

// A token in tokenizer_config.json: "x", {"content": "x", ...} or null.
std::string config_token(const json& cfg, const char* key) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return it->at("content").get<std::string>();
  return "";
}

std::string config_chat_template(const json& cfg, const std::string& where) {
  const auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  MIXSERVE_CHECK(it->is_array(), where, ".chat_template must be a string or a list of templates");
  for (const json& t : *it) {
    if (t.value("name", std::string()) == "default") return t.value("template", std::string());
  }
  return "";
}

std::shared_ptr<const Tokenizer> load_spec(const std::string& tokenizer_json,
                                           const std::string& config_json,
                                           const std::string& generation_config_json,
                                           const std::string& chat_template_override,
                                           const std::string& tok_where,
                                           const std::string& cfg_where) {
  const json tok = parse_json(tokenizer_json, tok_where);
  const json cfg = parse_json(config_json.empty() ? "{}" : config_json, cfg_where);
  MIXSERVE_CHECK(tok.is_object(), tok_where, ": expected a JSON object");
  MIXSERVE_CHECK(cfg.is_object(), cfg_where, ": expected a JSON object");
  HfTokenizerSpec spec;
  // Transformers mode: a Llama class in the config means transformers 5 replaces the file's
  // normalizer, pre-tokenizer and decoder (transformers_llama.h), so those are not read at all.
  const std::string cls = cfg.value("tokenizer_class", std::string());
  const bool transformers_llama = is_transformers_llama_class(cls);
  spec.model = parse_model(tok.contains("model") ? tok.at("model") : json(), tok_where + ": model",
                           transformers_llama);
  if (const auto it = tok.find("added_tokens"); it != tok.end() && !it->is_null()) {
    for (size_t i = 0; i < it->size(); ++i) {
      const json& a = (*it)[i];
      const std::string where = tok_where + ": added_tokens[" + std::to_string(i) + "]";
      AddedToken t;
      MIXSERVE_CHECK(a.contains("id") && a.at("id").is_number_integer() && a.at("id") >= 0, where,
                     ".id must be a non-negative integer");
      t.id = a.at("id").get<int32_t>();
      t.content = get_string(a, "content", where);
      t.special = get_bool(a, "special", false, where);
      t.normalized = get_bool(a, "normalized", !t.special, where);
      t.lstrip = get_bool(a, "lstrip", false, where);
      t.rstrip = get_bool(a, "rstrip", false, where);
      t.single_word = get_bool(a, "single_word", false, where);
      spec.added_tokens.push_back(std::move(t));
    }
  }
  if (transformers_llama) {
    TransformersLlamaSteps steps =
        transformers_llama_steps(get_optional_bool(cfg, "legacy", cfg_where),
                                 get_optional_bool(cfg, "add_prefix_space", cfg_where));
    spec.pre_tokenizer = std::move(steps.pre_tokenizer);
    spec.decoder = std::move(steps.decoder);
  } else {
    add_normalizer(tok.value("normalizer", json()), tok_where + ": normalizer", spec.normalizer);
    spec.pre_tokenizer =
        parse_pre_tokenizer(tok.value("pre_tokenizer", json()), tok_where + ": pre_tokenizer");
    if (const json d = tok.value("decoder", json()); d.is_null()) {
      spec.decoder_null = true;
    } else {
      add_decoder(d, tok_where + ": decoder", spec.decoder);
    }
  }

  spec.bos_token = config_token(cfg, "bos_token");
  spec.eos_token = config_token(cfg, "eos_token");
  spec.chat_template = chat_template_override.empty() ? config_chat_template(cfg, cfg_where)
                                                      : chat_template_override;
  spec.clean_up_tokenization_spaces =
      get_bool(cfg, "clean_up_tokenization_spaces", false, cfg_where);

  auto lookup = [&](const std::string& piece) -> int32_t {
    for (const AddedToken& t : spec.added_tokens) {
      if (t.content == piece) return t.id;
    }
    return spec.model->id_of(piece);
  };
  // Special tokens around the text: transformers' LlamaTokenizerFast rebuilds the
  // post-processor from add_bos_token / add_eos_token; other classes use tokenizer.json's.
  const bool llama_class =
      cls.rfind("LlamaTokenizer", 0) == 0 || cls.rfind("CodeLlamaTokenizer", 0) == 0;
  if (llama_class) {
    for (auto [key, fallback, token, into] :
         {std::tuple{"add_bos_token", true, spec.bos_token, &spec.prefix_ids},
          std::tuple{"add_eos_token", false, spec.eos_token, &spec.suffix_ids}}) {
      if (!get_bool(cfg, key, fallback, cfg_where)) continue;
      const int32_t id = lookup(token);
      MIXSERVE_CHECK(id >= 0, cfg_where, ": ", key, " is true but the token \"", token,
                     "\" is not in the vocabulary");
      into->push_back(id);
    }
  } else if (const json pp = tok.value("post_processor", json()); !pp.is_null()) {
    const std::string where = tok_where + ": post_processor";
    const std::string type = get_string(pp, "type", where);
    MIXSERVE_CHECK(type == "TemplateProcessing", where, ": type \"", type,
                   "\" is not supported (supported: null, TemplateProcessing)");
    bool after_sequence = false;
    for (const json& item : pp.at("single")) {
      if (item.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const auto st = pp.at("special_tokens").find(name);
      MIXSERVE_CHECK(st != pp.at("special_tokens").end(), where, ".special_tokens lacks \"", name,
                     "\"");
      for (const json& id : st->at("ids")) {
        (after_sequence ? spec.suffix_ids : spec.prefix_ids).push_back(id.get<int32_t>());
      }
    }
  }

  if (!generation_config_json.empty()) {
    const json gen = parse_json(generation_config_json, "generation_config.json");
    if (const auto it = gen.find("eos_token_id"); it != gen.end()) {
      if (it->is_number_integer()) spec.eos_ids.push_back(it->get<int32_t>());
      if (it->is_array()) {
        for (const json& id : *it) spec.eos_ids.push_back(id.get<int32_t>());
      }
    }
  }
  if (spec.eos_ids.empty() && !spec.eos_token.empty()) {
    if (const int32_t id = lookup(spec.eos_token); id >= 0) spec.eos_ids.push_back(id);
  }
  return std::make_shared<HfTokenizer>(std::move(spec));
}

// nlohmann's own errors (a field of the wrong type deep inside) become ours, with the file.
std::shared_ptr<const Tokenizer> load(const std::string& tokenizer_json,
                                      const std::string& config_json,
                                      const std::string& generation_config_json,
                                      const std::string& chat_template_override,
                                      const std::string& tok_where, const std::string& cfg_where) {
  try {
    return load_spec(tokenizer_json, config_json, generation_config_json, chat_template_override,
                     tok_where, cfg_where);
  } catch (const json::exception& e) {
    throw_error(tok_where, " / ", cfg_where, ": unexpected structure (", e.what(), ")");
  }
}

}  // namespace

std::shared_ptr<const Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json,
                                                      const std::string& tokenizer_config_json) {
  return load(tokenizer_json, tokenizer_config_json, "", "", "tokenizer.json",
              "tokenizer_config.json");
}

std::shared_ptr<const Tokenizer> Tokenizer::from_dir(const std::filesystem::path& dir) {
  const std::filesystem::path tok_path = dir / "tokenizer.json";
  const std::optional<std::string> tok = read_file(tok_path);
  MIXSERVE_CHECK(tok.has_value(), tok_path.string(),
                 ": cannot read it (mixserve needs a Hugging Face tokenizer.json in the model "
                 "folder; a tokenizer.model alone is not enough)");
  const std::filesystem::path cfg_path = dir / "tokenizer_config.json";
  const std::string cfg = read_file(cfg_path).value_or("");
  const std::string gen = read_file(dir / "generation_config.json").value_or("");
  // transformers >= 4.43 may save the template beside the config; it then takes precedence.
  const std::string tmpl = read_file(dir / "chat_template.jinja").value_or("");
  return load(*tok, cfg, gen, tmpl, tok_path.string(), cfg_path.string());
}

}  // namespace mixserve
