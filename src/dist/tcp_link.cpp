// TcpLink: exact-length reads and writes on a non-blocking socket, each wait bounded by poll().
#include "dist/tcp_link.h"

#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cerrno>
#include <climits>
#include <cstdio>

#include "util/error.h"

namespace mixserve::dist {

using boost::asio::ip::tcp;

Deadline Deadline::after(double seconds) {
  Deadline d;
  d.at_ = std::chrono::steady_clock::now() +
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
              std::chrono::duration<double>(seconds));
  return d;
}

bool Deadline::passed() const { return at_ && std::chrono::steady_clock::now() >= *at_; }

int Deadline::poll_timeout_ms() const {
  if (!at_) return -1;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(*at_ - std::chrono::steady_clock::now());
  if (left.count() <= 0) return 0;
  return left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count());
}

std::string seconds_text(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g s", seconds);
  return buf;
}

bool wait_fd(int fd, short events, const Deadline& deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int ms = deadline.poll_timeout_ms();
    const int got = ::poll(&p, 1, ms);
    if (got > 0) return true;  // ready, or an error / hang-up the next call will report
    if (got == 0 && ms >= 0) return false;
    if (got < 0 && errno != EINTR) return true;  // let the socket call report it
  }
}

bool connect_before(tcp::socket& socket, const tcp::endpoint& endpoint, const Deadline& deadline,
                    boost::system::error_code* ec) {
  socket.open(endpoint.protocol(), *ec);
  if (*ec) return false;
  socket.native_non_blocking(true, *ec);
  if (*ec) return false;
  if (::connect(socket.native_handle(), endpoint.data(), static_cast<socklen_t>(endpoint.size())) !=
      0) {
    if (errno != EINPROGRESS) {
      *ec = boost::system::error_code(errno, boost::system::system_category());
      socket.close();
      return false;
    }
    if (!wait_fd(socket.native_handle(), POLLOUT, deadline)) {
      *ec = boost::asio::error::timed_out;
      socket.close();
      return false;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      *ec = boost::system::error_code(err, boost::system::system_category());
      socket.close();
      return false;
    }
  }
  socket.native_non_blocking(false, *ec);
  return !*ec;
}

TcpLink::TcpLink(tcp::socket socket, std::string self, int peer_rank)
    : socket_(std::move(socket)), self_(std::move(self)), peer_rank_(peer_rank) {
  boost::system::error_code ec;
  const tcp::endpoint remote = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("unknown address")
               : remote.address().to_string() + ":" + std::to_string(remote.port());
  socket_.set_option(tcp::no_delay(true), ec);
  // Asio's non-blocking mode: read_some / write_some return would_block instead of waiting
  // without a limit, so every wait goes through wait_fd and its deadline.
  if (!ec) socket_.non_blocking(true, ec);
  if (ec) fail("set up", "the connection", ec.message());
}

std::string TcpLink::peer_text() const {
  if (peer_rank_ < 0) return "the peer at " + remote_;
  return "rank " + std::to_string(peer_rank_) + " (" + remote_ + ")";
}

void TcpLink::fail(const char* verb, const char* what, const std::string& why) const {
  throw_error(self_, ": could not ", verb, " ", what, " ",
              std::string(verb) == "send" ? "to " : "from ", peer_text(), ": ", why);
}

void TcpLink::read(void* data, size_t n, const char* what, const Deadline& deadline) {
  auto* p = static_cast<uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    boost::system::error_code ec;
    const size_t got = socket_.read_some(boost::asio::buffer(p + done, n - done), ec);
    done += got;
    if (!ec) continue;
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
      if (!wait_fd(socket_.native_handle(), POLLIN, deadline)) {
        fail("receive", what, "timed out (is that rank stuck or far behind?)");
      }
      continue;
    }
    if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset) {
      fail("receive", what, "the connection was closed (did that rank fail or exit? see its log)");
    }
    fail("receive", what, ec.message());
  }
}

void TcpLink::write(const void* data, size_t n, const char* what, const Deadline& deadline) {
  const auto* p = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < n) {
    boost::system::error_code ec;
    const size_t sent = socket_.write_some(boost::asio::buffer(p + done, n - done), ec);
    done += sent;
    if (!ec) continue;
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
      if (!wait_fd(socket_.native_handle(), POLLOUT, deadline)) {
        fail("send", what, "timed out (is that rank stuck or far behind?)");
      }
      continue;
    }
    if (ec == boost::asio::error::broken_pipe || ec == boost::asio::error::connection_reset ||
        ec == boost::asio::error::bad_descriptor) {
      fail("send", what, "the connection was closed (did that rank fail or exit? see its log)");
    }
    fail("send", what, ec.message());
  }
}

void TcpLink::close() {
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

}  // namespace mixserve::dist
