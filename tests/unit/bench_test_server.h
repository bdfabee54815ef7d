// A tiny OpenAI-like HTTP server for the load generator's tests, on plain POSIX sockets (one
// thread per connection). /v1/completions streams max_tokens chunks as SSE (chunked transfer
// encoding, as mixserve and vLLM send it) with a usage chunk and [DONE], or answers one JSON
// object without streaming. Knobs make it fail, drop usage, or pause between tokens.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mixserve::testing {

class BenchTestServer {
 public:
  int fail_every = 0;          // answer every Nth request (1-based) with HTTP 500
  bool send_usage = true;
  int token_delay_ms = 1;
  std::atomic<int> max_in_flight{0};
  std::atomic<int> requests{0};
  std::mutex bodies_mu;
  std::vector<nlohmann::json> bodies;

  BenchTestServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 512);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~BenchTestServer() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    for (auto& t : workers_) t.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      workers_.emplace_back([this, c] { serve(c); });
    }
  }

  static bool send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += size_t(n);
    }
    return true;
  }
  static std::string chunk(const std::string& s) {
    char len[16];
    std::snprintf(len, sizeof len, "%zx\r\n", s.size());
    return len + s + "\r\n";
  }

  void serve(int c) {
    std::string in;
    char buf[4096];
    size_t header_end;
    while ((header_end = in.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return (void)::close(c);
      in.append(buf, size_t(n));
    }
    const size_t cl = in.find("Content-Length: ");
    const size_t body_len = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
    while (in.size() < header_end + 4 + body_len) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return (void)::close(c);
      in.append(buf, size_t(n));
    }
    const int index = ++requests;
    const int now = ++in_flight_;
    for (int m = max_in_flight.load(); now > m && !max_in_flight.compare_exchange_weak(m, now);) {
    }
    const auto body = nlohmann::json::parse(in.substr(header_end + 4, body_len));
    {
      std::lock_guard<std::mutex> lock(bodies_mu);
      bodies.push_back(body);
    }
    const int n_tok = body.value("max_tokens", 1);
    const int n_prompt =
        body.contains("prompt") && body["prompt"].is_array() ? int(body["prompt"].size()) : 3;
    const nlohmann::json usage = {{"prompt_tokens", n_prompt}, {"completion_tokens", n_tok}};
    // In-flight ends before the last bytes go out: the client may start the next request as
    // soon as it reads them.
    if (fail_every > 0 && index % fail_every == 0) {
      --in_flight_;
      send_all(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
                  "Connection: close\r\n\r\nboom");
    } else if (!body.value("stream", false)) {
      nlohmann::json r = {{"choices", {{{"text", std::string(size_t(n_tok), 'x')},
                                        {"finish_reason", "length"}}}}};
      if (send_usage) r["usage"] = usage;
      const std::string s = r.dump();
      --in_flight_;
      send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(s.size()) + "\r\nConnection: close\r\n\r\n" + s);
    } else {
      send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
      for (int i = 0; i < n_tok; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(token_delay_ms));
        nlohmann::json ch = {{"choices", {{{"index", 0}, {"text", "t" + std::to_string(i)}}}}};
        send_all(c, chunk("data: " + ch.dump() + "\n\n"));
      }
      if (send_usage)
        send_all(c, chunk("data: " + nlohmann::json({{"choices", nlohmann::json::array()},
                                                      {"usage", usage}}).dump() + "\n\n"));
      --in_flight_;
      send_all(c, chunk("data: [DONE]\n\n") + chunk(""));
    }
    ::close(c);
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0};
  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

}  // namespace mixserve::testing
