// One TCP connection between two ranks, with deadlines: the transport under connect_tcp.
// Internal to src/dist (includes Boost.Asio): include it only from .cpp files of this folder.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace mixserve::dist {

// A point in time after which a wait gives up, or never.
class Deadline {
 public:
  static Deadline never() { return Deadline(); }
  static Deadline after(double seconds);
  bool passed() const;
  // Milliseconds left for poll(): -1 forever, 0 when passed.
  int poll_timeout_ms() const;

 private:
  std::optional<std::chrono::steady_clock::time_point> at_;
};

// "0.5 s", for messages.
std::string seconds_text(double seconds);

// Waits until fd is ready for `events` (POLLIN / POLLOUT); false once the deadline passed.
bool wait_fd(int fd, short events, const Deadline& deadline);

// Opens `socket` and connects it to `endpoint`, giving up at the deadline (a blocking connect
// to an unreachable host could otherwise take minutes). On failure sets *ec and returns false.
bool connect_before(boost::asio::ip::tcp::socket& socket,
                    const boost::asio::ip::tcp::endpoint& endpoint, const Deadline& deadline,
                    boost::system::error_code* ec);

class TcpLink {
 public:
  // self: who this end is, for messages ("connect_tcp (rank 1 of 3)"); peer_rank: the other
  // end's rank, -1 while unknown. Sets TCP_NODELAY: collectives are small latency-bound frames.
  TcpLink(boost::asio::ip::tcp::socket socket, std::string self, int peer_rank);

  void set_peer_rank(int rank) { peer_rank_ = rank; }
  void set_self(std::string self) { self_ = std::move(self); }
  // "127.0.0.1:41234" (or "unknown address" once closed).
  std::string remote() const { return remote_; }

  // Transfer exactly n bytes or throw mixserve::Error naming this end, the peer, `what` was
  // being transferred and why it failed (timeout, EOF: the peer closed or died, socket error).
  void read(void* data, size_t n, const char* what, const Deadline& deadline);
  void write(const void* data, size_t n, const char* what, const Deadline& deadline);
  void close();

 private:
  [[noreturn]] void fail(const char* verb, const char* what, const std::string& why) const;
  std::string peer_text() const;

  boost::asio::ip::tcp::socket socket_;
  std::string self_;
  std::string remote_;
  int peer_rank_;
};

}  // namespace mixserve::dist
