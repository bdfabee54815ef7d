#include "server/http_format.h"

#include <cstdio>

namespace mixserve::server {

std::string_view status_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

std::string format_http_response(int status, std::string_view content_type,
                                 const HeaderList& headers, std::string_view body, bool keep_alive,
                                 bool head_only) {
  std::string out;
  out.reserve(160 + body.size());
  out += "HTTP/1.1 " + std::to_string(status) + " ";
  out += status_reason(status);
  out += "\r\nServer: mixserve\r\nContent-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size());
  out += keep_alive ? "\r\nConnection: keep-alive" : "\r\nConnection: close";
  for (const auto& [name, value] : headers) out += "\r\n" + name + ": " + value;
  out += "\r\n\r\n";
  if (!head_only) out += body;
  return out;
}

std::string event_stream_head(bool keep_alive) {
  std::string out =
      "HTTP/1.1 200 OK\r\nServer: mixserve\r\nContent-Type: text/event-stream\r\n"
      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return out;
}

std::string http_chunk(std::string_view data) {
  if (data.empty()) return {};
  char size[20];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out = size;
  out += data;
  out += "\r\n";
  return out;
}

}  // namespace mixserve::server
