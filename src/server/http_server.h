// HttpServer: asynchronous HTTP/1.1 (Boost.Beast) on a small thread pool, no thread per
// connection. It parses requests, hands them to ApiService, and streams CompletionJobs as the
// engine pushes events (TokenStream listeners wake the connection; nobody blocks waiting).
// Beast stays inside http_server.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mixserve::server {

class ApiService;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;               // 0 = any free port (see port())
  int threads = 2;                    // I/O threads
  size_t max_header_bytes = 16 << 10;
  size_t max_body_bytes = 4 << 20;
  int read_timeout_s = 60;            // to receive one request (also: idle keep-alive)
  int write_timeout_s = 60;           // for one write; a client that stops reading is dropped
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, ApiService& service);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens (throws mixserve::Error naming the address when that fails), then
  // starts the I/O threads.
  void start();
  uint16_t port() const;
  // Closes the listening socket; open connections go on.
  void stop_accepting();
  // Number of open connections.
  int64_t connections() const;
  // Closes every connection (their requests are cancelled) and joins the threads.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Raises the soft limit on open files to the hard limit (each connection is a descriptor);
// returns the new soft limit.
uint64_t raise_open_file_limit();

}  // namespace mixserve::server
