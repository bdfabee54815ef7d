// ApiError: an error answered to an HTTP client in OpenAI's shape,
// {"error": {"message", "type", "param", "code"}}, with its HTTP status.
#pragma once

#include <stdexcept>
#include <string>

namespace mixserve::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string type = "",
           std::string code = "")
      : std::runtime_error(message), status_(status), param_(std::move(param)),
        type_(type.empty() ? default_type(status) : std::move(type)), code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }  // "" = null
  const std::string& type() const { return type_; }
  const std::string& code() const { return code_; }    // "" = null

  // OpenAI's error types by status.
  static std::string default_type(int status) {
    switch (status) {
      case 400: case 413: case 431: return "invalid_request_error";
      case 401: return "authentication_error";
      case 404: return "not_found_error";
      case 405: return "invalid_request_error";
      case 429: return "rate_limit_error";
      case 503: return "service_unavailable_error";
      default: return status >= 500 ? "internal_server_error" : "invalid_request_error";
    }
  }

 private:
  int status_;
  std::string param_, type_, code_;
};

}  // namespace mixserve::server
