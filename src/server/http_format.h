// HTTP/1.1 response bytes, written by hand so the wire format is plain to see and testable
// without sockets: complete responses (Content-Length) and event streams (chunked).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mixserve::server {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

std::string_view status_reason(int status);  // "Not Found"; "Unknown" for others

std::string format_http_response(int status, std::string_view content_type,
                                 const HeaderList& headers, std::string_view body,
                                 bool keep_alive, bool head_only = false);

// The head of a 200 text/event-stream response sent with chunked transfer encoding.
std::string event_stream_head(bool keep_alive);
// One chunk of a chunked body (empty data gives nothing: an empty chunk would end the body).
std::string http_chunk(std::string_view data);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace mixserve::server
