// The C++ renderer against @huggingface/jinja's output, stored in
// tests/data/chat_templates/expected.json by tools/gen_chat_template_golden.mjs: real model
// templates over several conversations, and one small template per language feature.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/chat_template.h"
#include "util/error.h"

namespace mixserve {
namespace {

using json = nlohmann::ordered_json;
const std::filesystem::path kDir =
    std::filesystem::path(MIXSERVE_SOURCE_DIR) / "tests/data/chat_templates";

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in) << p;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json read_json(const std::string& name) { return json::parse(read(kDir / name)); }

TEST(ChatTemplateGolden, RealTemplatesMatchReference) {
  const json data = read_json("conversations.json");
  const json expected = read_json("expected.json");
  int checked = 0, errors = 0;
  for (const json& c : expected["conversations"]) {
    const std::string name = c["template"].get<std::string>() + " / " +
                             c["conversation"].get<std::string>() + " / " +
                             c["context"].get<std::string>() +
                             (c["add_generation_prompt"].get<bool>() ? " / agp" : "");
    ChatTemplateOptions opts;
    opts.add_generation_prompt = c["add_generation_prompt"];
    opts.bos_token = data["bos_token"].get<std::string>();
    opts.eos_token = data["eos_token"].get<std::string>();
    opts.extra_context_json = data["contexts"][c["context"].get<std::string>()].dump();
    const std::string messages = data["conversations"][c["conversation"].get<std::string>()].dump();
    const std::string source = read(kDir / c["template"].get<std::string>());
    if (c.contains("error")) {
      ++errors;
      try {
        render_chat_template(source, messages, opts);
        ADD_FAILURE() << name << ": expected error " << c["error"];
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos)
            << name << ": " << e.what();
      }
    } else {
      EXPECT_EQ(render_chat_template(source, messages, opts), c["output"].get<std::string>())
          << name;
    }
    ++checked;
  }
  EXPECT_GE(checked, 100);
  EXPECT_GT(errors, 0);
}

TEST(ChatTemplateGolden, EachFeatureMatchesReference) {
  const json features = read_json("features.json");
  const json expected = read_json("expected.json")["features"];
  ASSERT_EQ(features.size(), expected.size());
  const std::string messages =
      R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}])";
  for (size_t i = 0; i < features.size(); ++i) {
    const std::string name = features[i]["name"];
    if (name == "strftime_shape") continue;  // depends on the clock; checked in test_jinja
    ChatTemplateOptions opts;
    const std::string tmpl = features[i]["template"];
    if (expected[i].contains("error")) {
      try {
        render_chat_template(tmpl, messages, opts);
        ADD_FAILURE() << name << ": expected error " << expected[i]["error"];
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(expected[i]["error"].get<std::string>()),
                  std::string::npos) << name << ": " << e.what();
      }
      continue;
    }
    try {
      EXPECT_EQ(render_chat_template(tmpl, messages, opts), expected[i]["output"].get<std::string>())
          << name;
    } catch (const Error& e) {
      ADD_FAILURE() << name << ": " << e.what();
    }
  }
}

TEST(ChatTemplate, StructMessagesAndReuse) {
  const ChatTemplate t("{% for m in messages %}{{ m.role }}:{{ m.content }}{% if m.content is none %}"
                       "<null>{% endif %};{% endfor %}{{ bos_token is defined }}");
  ChatTemplateOptions opts;
  EXPECT_EQ(t.render(std::vector<ChatMessage>{{"user", "a"}, {"assistant", std::nullopt}}, opts),
            "user:a;assistant:<null>;false");
  opts.bos_token = "<s>";
  EXPECT_EQ(t.render(R"([{"role": "user", "content": "b"}])", opts), "user:b;true");
}

TEST(ChatTemplate, ConfigReadsStringOrNamedList) {
  const auto dir = std::filesystem::temp_directory_path() / "mixserve_chat_template_cfg";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"bos_token": {"content": "<s>"}, "eos_token": "</s>",
               "chat_template": [{"name": "rag", "template": "R"},
                                 {"name": "default", "template": "D"}]})";
  }
  const ChatTemplateConfig cfg = load_chat_template_config(dir);
  EXPECT_EQ(cfg.chat_template, "D");
  EXPECT_EQ(cfg.bos_token.value_or(""), "<s>");
  EXPECT_EQ(cfg.eos_token.value_or(""), "</s>");
  {
    std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": [{"name": "rag"}]})";
  }
  EXPECT_THROW(load_chat_template_config(dir), Error);
  std::filesystem::remove_all(dir);
}

TEST(ChatTemplate, BadInputsAreErrors) {
  ChatTemplateOptions opts;
  EXPECT_THROW(render_chat_template("x", "{\"not\": \"a list\"}", opts), Error);
  EXPECT_THROW(render_chat_template("x", "[", opts), Error);
  opts.extra_context_json = R"({"range": 1})";  // would shadow a builtin
  EXPECT_THROW(render_chat_template("x", "[]", opts), Error);
  opts.extra_context_json = R"({"tools": [1], "messages": [{"role": "r"}]})";
  EXPECT_EQ(render_chat_template("{{ tools }}{{ messages[0].role }}", "[]", opts), "[1]r");
}

}  // namespace
}  // namespace mixserve
