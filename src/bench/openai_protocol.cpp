#include "bench/openai_protocol.h"

#include <nlohmann/json.hpp>

namespace mixserve::bench {

std::string build_request_body(const WorkloadItem& item, const ApiRequestOptions& options) {
  nlohmann::json body;
  if (!options.model.empty()) body["model"] = options.model;
  if (options.kind == ApiKind::kChat) {
    body["messages"] = nlohmann::json::array(
        {{{"role", "user"}, {"content", item.prompt_text}}});
  } else if (!item.prompt_ids.empty()) {
    body["prompt"] = item.prompt_ids;
  } else {
    body["prompt"] = item.prompt_text;
  }
  body["max_tokens"] = item.output_len;
  body["temperature"] = options.temperature;
  if (options.ignore_eos) body["ignore_eos"] = true;
  body["stream"] = options.stream;
  if (options.stream) body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

void SseParser::end_line() {
  if (line_.empty()) {  // a blank line ends the event
    if (has_data_) out_.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line_.rfind("data", 0) == 0 && (line_.size() == 4 || line_[4] == ':')) {
    std::string_view value = std::string_view(line_).substr(line_.size() == 4 ? 4 : 5);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  line_.clear();
}

std::vector<std::string> SseParser::feed(std::string_view bytes) {
  out_.clear();
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the \n of a \r\n pair: the line already ended
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = (c == '\r');
    if (c == '\n' || c == '\r') {
      end_line();
    } else {
      line_ += c;
    }
  }
  return std::move(out_);
}

std::optional<std::string> SseParser::finish() {
  if (!line_.empty()) end_line();
  if (!has_data_) return std::nullopt;
  has_data_ = false;
  return std::move(data_);
}

ApiMessage parse_api_message(std::string_view data, ApiKind kind) {
  ApiMessage m;
  const size_t first = data.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && data.substr(first).rfind("[DONE]", 0) == 0) {
    m.done = true;
    return m;
  }
  nlohmann::json j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    m.error = "response is not a JSON object: " + std::string(data.substr(0, 200));
    return m;
  }
  if (j.contains("error") && !j["error"].is_null()) {
    const auto& e = j["error"];
    m.error = e.is_object() && e.contains("message") && e["message"].is_string()
                  ? e["message"].get<std::string>()
                  : e.dump();
    return m;
  }
  if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
    const auto& c = j["choices"][0];
    m.has_choice = true;
    const nlohmann::json* text = nullptr;
    if (kind == ApiKind::kCompletions) {
      if (c.contains("text")) text = &c["text"];
    } else if (c.contains("delta") && c["delta"].contains("content")) {
      text = &c["delta"]["content"];
    } else if (c.contains("message") && c["message"].contains("content")) {
      text = &c["message"]["content"];
    }
    if (text != nullptr && text->is_string()) m.text = text->get<std::string>();
    if (c.contains("token_ids") && c["token_ids"].is_array()) m.num_token_ids = c["token_ids"].size();
    if (c.contains("finish_reason") && c["finish_reason"].is_string())
      m.finish_reason = c["finish_reason"].get<std::string>();
  }
  if (j.contains("usage") && j["usage"].is_object()) {
    const auto& u = j["usage"];
    if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
      m.prompt_tokens = u["prompt_tokens"].get<int64_t>();
    if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
      m.completion_tokens = u["completion_tokens"].get<int64_t>();
  }
  return m;
}

}  // namespace mixserve::bench
