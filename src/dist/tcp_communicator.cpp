// connect_tcp: the ranks are processes (or threads) joined by TCP sockets in a star around
// rank 0.
//
// Handshake: rank 0 listens on master_addr:master_port; every other rank connects (retrying
// until timeout_s, since rank 0 may start later) and sends a Hello {magic, version, world size,
// rank}. Rank 0 checks them (a stranger on the port, another world size, a rank out of range
// or claimed twice) and, once all world_size-1 ranks are there, answers each with a Reply; on a
// problem it answers with the error text, so every rank throws the same message.
//
// Collectives: each peer sends an OpHeader (and its data) to rank 0 and reads a Reply (and the
// result). all_reduce_sum adds the peers' data to rank 0's in rank order (((d0 + d1) + d2)...),
// so every rank gets the same bits; broadcast relays the root's bytes through rank 0.
// On any failure a rank closes its sockets: the others see EOF at once and throw too, instead
// of waiting for a peer that will never answer. Both ends are assumed to share byte order.
#include <poll.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "dist/communicator.h"
#include "dist/tcp_link.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

using boost::asio::ip::tcp;

constexpr uint32_t kMagic = 0x4453584D;  // "MXSD" in memory order
constexpr uint32_t kProtocolVersion = 1;

struct Hello {
  uint32_t magic = kMagic;
  uint32_t version = kProtocolVersion;
  int32_t world_size = 0;
  int32_t rank = 0;
};

enum class Op : uint32_t { kAllReduce = 1, kBroadcast = 2, kBarrier = 3 };

const char* op_name(uint32_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kAllReduce:
      return "all_reduce_sum";
    case Op::kBroadcast:
      return "broadcast";
    case Op::kBarrier:
      return "barrier";
  }
  return "an unknown operation";
}

struct OpHeader {
  uint32_t op = 0;
  int32_t root = 0;
  uint64_t count = 0;  // floats (all_reduce_sum) or bytes the root sends (broadcast)
};

// Rank 0's answer to a Hello or an OpHeader; status kError is followed by `len` bytes of text,
// kOk by `len` bytes of result.
struct Reply {
  uint32_t status = 0;
  uint32_t reserved = 0;
  uint64_t len = 0;
};
constexpr uint32_t kOk = 0;
constexpr uint32_t kError = 1;

// Rank 0 tells a peer why the group failed, so it throws the same message; a peer already gone
// is no news.
void send_error(TcpLink& link, const std::string& text) {
  const Reply reply{kError, 0, text.size()};
  const Deadline soon = Deadline::after(1.0);
  try {
    link.write(&reply, sizeof(reply), "an error", soon);
    link.write(text.data(), text.size(), "an error", soon);
  } catch (const Error&) {
  }
}

std::string rank_text(int rank, int size) {
  return "rank " + std::to_string(rank) + " of " + std::to_string(size);
}

// Rank 0: binds master_addr:master_port (or every interface when that address is not one of
// this host's, e.g. behind NAT) and accepts the others.
std::vector<std::unique_ptr<TcpLink>> accept_peers(boost::asio::io_context& io,
                                                   const Rendezvous& rv) {
  const std::string self = "connect_tcp (" + rank_text(0, rv.world_size) + ")";
  const std::string where = rv.master_addr + ":" + std::to_string(rv.master_port);
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  const auto found = resolver.resolve(rv.master_addr, std::to_string(rv.master_port), ec);
  if (ec || found.empty()) {
    throw_error(self, ": cannot resolve the master address ", rv.master_addr, ": ", ec.message(),
                " (check --master-addr / MASTER_ADDR)");
  }
  tcp::endpoint endpoint = found.begin()->endpoint();
  tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(endpoint, ec);
  if (ec == boost::system::errc::address_not_available) {
    ec.clear();
    endpoint.address(endpoint.protocol() == tcp::v4()
                         ? boost::asio::ip::address(boost::asio::ip::address_v4::any())
                         : boost::asio::ip::address(boost::asio::ip::address_v6::any()));
    acceptor.bind(endpoint, ec);
  }
  if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw_error(self, ": cannot listen on ", where, ": ", ec.message(),
                " (is another job using the port? choose another --master-port / MASTER_PORT)");
  }
  acceptor.non_blocking(true);

  const Deadline deadline = Deadline::after(rv.timeout_s);
  std::vector<std::unique_ptr<TcpLink>> links(static_cast<size_t>(rv.world_size));
  int joined = 0;
  // On a bad peer: tell everyone connected so far (and the culprit) why, then throw.
  auto refuse = [&](TcpLink* culprit, const std::string& why) {
    const std::string text = self + ": " + why;
    if (culprit != nullptr) send_error(*culprit, text);
    for (auto& link : links) {
      if (link) send_error(*link, text);
    }
    throw Error(text);
  };
  while (joined < rv.world_size - 1) {
    if (!wait_fd(acceptor.native_handle(), POLLIN, deadline)) {
      std::string missing;
      for (int r = 1; r < rv.world_size; ++r) {
        if (!links[r]) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      }
      refuse(nullptr, "listened on " + where + " for " + seconds_text(rv.timeout_s) +
                          " but rank(s) " + missing + " never connected (start every rank " +
                          "with the same master address and port, or raise the timeout)");
    }
    tcp::socket socket(io);
    acceptor.accept(socket, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again ||
        ec == boost::asio::error::connection_aborted) {
      continue;
    }
    if (ec) refuse(nullptr, "accept on " + where + " failed: " + ec.message());
    auto link = std::make_unique<TcpLink>(std::move(socket), self, -1);
    Hello hello;
    link->read(&hello, sizeof(hello), "its hello", deadline);
    const std::string from = "a peer at " + link->remote();
    if (hello.magic != kMagic) {
      refuse(link.get(), from + " is not a mixserve rank (another service on port " +
                             std::to_string(rv.master_port) + "?)");
    }
    if (hello.version != kProtocolVersion) {
      refuse(link.get(), from + " speaks protocol version " + std::to_string(hello.version) +
                             ", rank 0 speaks " + std::to_string(kProtocolVersion) +
                             " (run the same mixserve build on every node)");
    }
    if (hello.world_size != rv.world_size) {
      refuse(link.get(), from + " (rank " + std::to_string(hello.rank) + ") expects " +
                             std::to_string(hello.world_size) + " ranks but rank 0 expects " +
                             std::to_string(rv.world_size) +
                             " (give every node the same --nnodes / --tensor-parallel)");
    }
    if (hello.rank < 1 || hello.rank >= rv.world_size) {
      refuse(link.get(), from + " claims rank " + std::to_string(hello.rank) + ", outside [1, " +
                             std::to_string(rv.world_size) + ")");
    }
    if (links[hello.rank]) {
      refuse(link.get(), "rank " + std::to_string(hello.rank) + " claimed twice, by " +
                             links[hello.rank]->remote() + " and " + link->remote() +
                             " (give each node its own --node-rank / RANK)");
    }
    link->set_peer_rank(hello.rank);
    links[hello.rank] = std::move(link);
    ++joined;
  }
  for (int r = 1; r < rv.world_size; ++r) {
    Reply ok;
    links[r]->write(&ok, sizeof(ok), "the welcome", deadline);
  }
  return links;
}

// Ranks > 0: connect to rank 0, retrying until the deadline, and say hello.
std::unique_ptr<TcpLink> join_master(boost::asio::io_context& io, const Rendezvous& rv) {
  const std::string self = "connect_tcp (" + rank_text(rv.rank, rv.world_size) + ")";
  const std::string where = rv.master_addr + ":" + std::to_string(rv.master_port);
  const Deadline deadline = Deadline::after(rv.timeout_s);
  std::string last_error = "no attempt finished";
  std::optional<tcp::socket> connected;
  while (!connected) {
    boost::system::error_code ec;
    tcp::resolver resolver(io);
    const auto found = resolver.resolve(rv.master_addr, std::to_string(rv.master_port), ec);
    if (ec) last_error = "cannot resolve " + rv.master_addr + ": " + ec.message();
    for (const auto& entry : found) {
      tcp::socket socket(io);
      if (connect_before(socket, entry.endpoint(), deadline, &ec)) {
        connected.emplace(std::move(socket));
        break;
      }
      last_error = ec.message();
    }
    if (connected) break;
    if (deadline.passed()) {
      throw_error(self, ": could not reach rank 0 at ", where, " within ",
                  seconds_text(rv.timeout_s), " (last error: ", last_error,
                  "); is rank 0 running, and are --master-addr / --master-port (MASTER_ADDR / "
                  "MASTER_PORT) the same on every node?");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto link = std::make_unique<TcpLink>(std::move(*connected), self, 0);
  Hello hello;
  hello.world_size = rv.world_size;
  hello.rank = rv.rank;
  // Rank 0 listened before we connected, so its own deadline ends within timeout_s from now;
  // the grace lets its verdict (welcome or refusal) arrive before ours runs out.
  constexpr double kVerdictGrace_s = 2.0;
  const Deadline answer = Deadline::after(rv.timeout_s + kVerdictGrace_s);
  link->write(&hello, sizeof(hello), "the hello", answer);
  Reply reply;
  link->read(&reply, sizeof(reply), "the welcome (rank 0 waits for every rank to join)", answer);
  if (reply.status != kOk) {
    std::string text(reply.len, '\0');
    link->read(text.data(), text.size(), "the refusal", answer);
    throw_error(self, ": rank 0 at ", where, " refused this rank: ", text);
  }
  return link;
}

class TcpCommunicator : public Communicator {
 public:
  TcpCommunicator(std::unique_ptr<boost::asio::io_context> io, const Rendezvous& rv,
                  std::vector<std::unique_ptr<TcpLink>> links)
      : io_(std::move(io)),
        rank_(rv.rank),
        size_(rv.world_size),
        collective_timeout_s_(rv.collective_timeout_s),
        links_(std::move(links)) {
    for (auto& link : links_) {
      if (link) link->set_self("tcp communicator (" + rank_text(rank_, size_) + ")");
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* data, size_t n) override {
    guarded([&](const Deadline& d) {
      OpHeader mine{static_cast<uint32_t>(Op::kAllReduce), 0, n};
      if (rank_ != 0) {
        TcpLink& hub = *links_[0];
        hub.write(&mine, sizeof(mine), "the all_reduce_sum header", d);
        hub.write(data, n * sizeof(float), "the all_reduce_sum data", d);
        read_reply(d, n * sizeof(float), data);
        return;
      }
      scratch_.resize(n);
      for (int r = 1; r < size_; ++r) {
        check_header(r, mine, d);
        links_[r]->read(scratch_.data(), n * sizeof(float), "its all_reduce_sum data", d);
        for (size_t i = 0; i < n; ++i) data[i] += scratch_[i];
      }
      for (int r = 1; r < size_; ++r) send_ok(r, data, n * sizeof(float), d);
    });
  }

  void broadcast(std::vector<uint8_t>* bytes, int root) override {
    if (root < 0 || root >= size_) {
      fail("broadcast root " + std::to_string(root) + " outside [0, " + std::to_string(size_) +
           ")");
    }
    guarded([&](const Deadline& d) {
      const uint64_t count = rank_ == root ? bytes->size() : 0;
      OpHeader mine{static_cast<uint32_t>(Op::kBroadcast), root, count};
      if (rank_ != 0) {
        TcpLink& hub = *links_[0];
        hub.write(&mine, sizeof(mine), "the broadcast header", d);
        if (rank_ == root) {
          hub.write(bytes->data(), bytes->size(), "the broadcast data", d);
          read_reply(d, 0, nullptr);
        } else {
          read_reply(d, std::nullopt, bytes);
        }
        return;
      }
      std::vector<uint8_t> relayed;
      for (int r = 1; r < size_; ++r) {
        const OpHeader got = check_header(r, mine, d);
        if (r == root) {
          relayed.resize(got.count);
          links_[r]->read(relayed.data(), relayed.size(), "its broadcast data", d);
        }
      }
      const std::vector<uint8_t>& payload = root == 0 ? *bytes : relayed;
      for (int r = 1; r < size_; ++r) {
        if (r == root) {
          send_ok(r, nullptr, 0, d);
        } else {
          send_ok(r, payload.data(), payload.size(), d);
        }
      }
      if (root != 0) *bytes = std::move(relayed);
    });
  }

  void barrier() override {
    guarded([&](const Deadline& d) {
      OpHeader mine{static_cast<uint32_t>(Op::kBarrier), 0, 0};
      if (rank_ != 0) {
        links_[0]->write(&mine, sizeof(mine), "the barrier header", d);
        read_reply(d, 0, nullptr);
        return;
      }
      for (int r = 1; r < size_; ++r) check_header(r, mine, d);
      for (int r = 1; r < size_; ++r) send_ok(r, nullptr, 0, d);
    });
  }

 private:
  // Runs one collective; on any error tells the peers (rank 0) and closes every socket, so no
  // rank waits for this one forever, then rethrows. A broken communicator refuses further use.
  template <typename Body>
  void guarded(Body&& body) {
    if (!broken_.empty()) {
      throw_error("tcp communicator (", rank_text(rank_, size_), ") is unusable after an ",
                  "earlier error: ", broken_);
    }
    const Deadline d =
        collective_timeout_s_ > 0 ? Deadline::after(collective_timeout_s_) : Deadline::never();
    try {
      body(d);
    } catch (const Error& e) {
      broken_ = e.what();
      for (auto& link : links_) {
        if (!link) continue;
        if (rank_ == 0) send_error(*link, e.what());
        link->close();
      }
      throw;
    }
  }

  [[noreturn]] void fail(const std::string& why) {
    const std::string text = "tcp communicator (" + rank_text(rank_, size_) + "): " + why;
    broken_ = text;
    for (auto& link : links_) {
      if (link) link->close();
    }
    throw Error(text);
  }

  // Rank 0: reads rank r's header and checks it matches this rank's collective.
  OpHeader check_header(int r, const OpHeader& mine, const Deadline& d) {
    OpHeader got;
    links_[r]->read(&got, sizeof(got), "its next collective", d);
    if (got.op != mine.op) {
      throw_error("tcp communicator (", rank_text(0, size_), "): rank ", r, " called ",
                  op_name(got.op), " while rank 0 called ", op_name(mine.op),
                  " (every rank must call the same collectives in the same order)");
    }
    const bool is_reduce = mine.op == static_cast<uint32_t>(Op::kAllReduce);
    if (is_reduce && got.count != mine.count) {
      throw_error("tcp communicator (", rank_text(0, size_), "): rank ", r, " reduces ", got.count,
                  " elements but rank 0 reduces ", mine.count);
    }
    if (mine.op == static_cast<uint32_t>(Op::kBroadcast) && got.root != mine.root) {
      throw_error("tcp communicator (", rank_text(0, size_), "): rank ", r,
                  " broadcasts from root ", got.root, " but rank 0 from root ", mine.root);
    }
    return got;
  }

  void send_ok(int r, const void* data, size_t len, const Deadline& d) {
    Reply reply{kOk, 0, len};
    links_[r]->write(&reply, sizeof(reply), "the result header", d);
    links_[r]->write(data, len, "the result", d);
  }

  // Ranks > 0: reads rank 0's reply; its payload goes to `out` (float* of `len` bytes when len
  // is given, else a std::vector<uint8_t>* resized to the reply's length).
  template <typename Out>
  void read_reply(const Deadline& d, std::optional<size_t> len, Out out) {
    TcpLink& hub = *links_[0];
    Reply reply;
    hub.read(&reply, sizeof(reply), "the result of the collective", d);
    if (reply.status != kOk) {
      std::string text(reply.len, '\0');
      hub.read(text.data(), text.size(), "rank 0's error", d);
      throw_error("tcp communicator (", rank_text(rank_, size_), "): rank 0 failed: ", text);
    }
    if (len && reply.len != *len) {
      throw_error("tcp communicator (", rank_text(rank_, size_), "): rank 0 answered ", reply.len,
                  " bytes, expected ", *len);
    }
    if constexpr (std::is_same_v<Out, std::vector<uint8_t>*>) {
      out->resize(reply.len);
      hub.read(out->data(), out->size(), "the broadcast data", d);
    } else if constexpr (!std::is_same_v<Out, std::nullptr_t>) {
      hub.read(out, reply.len, "the all_reduce_sum result", d);
    }
  }

  std::unique_ptr<boost::asio::io_context> io_;  // outlives the sockets of links_
  const int rank_, size_;
  const double collective_timeout_s_;
  std::vector<std::unique_ptr<TcpLink>> links_;  // [rank]; rank 0: all peers; others: [0]
  std::vector<float> scratch_;                   // [n] rank 0's receive buffer
  std::string broken_;                           // why the communicator stopped working
};

}  // namespace

std::unique_ptr<Communicator> connect_tcp(const Rendezvous& rv) {
  MIXSERVE_CHECK(rv.world_size >= 1, "connect_tcp: world size ", rv.world_size,
                 " must be at least 1");
  MIXSERVE_CHECK(rv.rank >= 0 && rv.rank < rv.world_size, "connect_tcp: rank ", rv.rank,
                 " outside [0, ", rv.world_size, ")");
  MIXSERVE_CHECK(rv.master_port > 0 && rv.master_port < 65536, "connect_tcp: master port ",
                 rv.master_port, " outside [1, 65535] (check --master-port / MASTER_PORT)");
  MIXSERVE_CHECK(rv.timeout_s > 0, "connect_tcp: timeout ", rv.timeout_s, " s must be positive");
  if (rv.world_size == 1) return std::move(make_thread_group(1)[0]);
  auto io = std::make_unique<boost::asio::io_context>();
  std::vector<std::unique_ptr<TcpLink>> links;
  if (rv.rank == 0) {
    links = accept_peers(*io, rv);
  } else {
    links.resize(1);
    links[0] = join_master(*io, rv);
  }
  return std::make_unique<TcpCommunicator>(std::move(io), rv, std::move(links));
}

}  // namespace mixserve::dist
