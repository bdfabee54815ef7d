// The only translation unit that includes Boost.Beast (slow to compile): keep it that way.
#include "server/http_server.h"

#include <sys/resource.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <thread>
#include <vector>

#include "server/api_service.h"
#include "server/http_format.h"
#include "util/error.h"
#include "util/log.h"

namespace mixserve::server {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

struct Shared {
  HttpServerOptions options;
  ApiService* service = nullptr;
  std::atomic<int64_t> connections{0};
};

// One connection. All its handlers run on its strand; the engine thread only post()s to it.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Shared& shared) : stream_(std::move(socket)), shared_(shared) {
    shared_.connections.fetch_add(1);
  }
  ~Session() { shared_.connections.fetch_sub(1); }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
  }

 private:
  const HttpServerOptions& opts() const { return shared_.options; }

  void read_header() {
    parser_.emplace();
    parser_->header_limit(uint32_t(opts().max_header_bytes));
    parser_->body_limit(opts().max_body_bytes);
    stream_.expires_after(std::chrono::seconds(opts().read_timeout_s));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    // curl asks before sending bodies over 1 KiB; answer so it need not wait a second.
    auto expect = parser_->get().find(http::field::expect);
    if (expect != parser_->get().end() && beast::iequals(expect->value(), "100-continue")) {
      continue_ = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(stream_, net::buffer(continue_),
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (ec) return self->close();
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read_error(beast::error_code ec) {
    // A closed, reset or idle connection: nothing to answer.
    if (ec.category() != beast::error_code(http::error::bad_target).category() ||
        ec == http::error::end_of_stream || ec == http::error::partial_message) {
      return close();
    }
    int status = 400;
    std::string message = "malformed HTTP request: " + ec.message();
    if (ec == http::error::body_limit) {
      status = 413;
      message = "the request body is larger than the limit of " +
                std::to_string(opts().max_body_bytes) + " bytes (--max-body-bytes)";
    } else if (ec == http::error::header_limit) {
      status = 431;
      message = "the request headers are larger than the limit of " +
                std::to_string(opts().max_header_bytes) + " bytes";
    }
    // The rest of the request is unread: answer and close.
    respond(shared_.service->error_response(status, message), false);
  }

  void on_read(beast::error_code ec, size_t) {
    if (ec) return on_read_error(ec);
    const auto arrival = std::chrono::steady_clock::now();
    http::request<http::string_body> req = parser_->release();
    parser_.reset();
    keep_alive_ = req.keep_alive();
    head_ = req.method() == http::verb::head;
    HttpResponse resp =
        shared_.service->handle(sv(req.method_string()), sv(req.target()),
                                sv(req[http::field::authorization]), req.body(), arrival);
    if (resp.job) return start_job(std::move(resp));
    respond(std::move(resp), keep_alive_);
  }

  void respond(HttpResponse resp, bool keep_alive) {
    keep_alive_ = keep_alive;
    response_done_ = true;
    send(format_http_response(resp.status, resp.content_type, resp.headers, resp.body,
                              keep_alive, head_));
  }

  // ---- a response produced by a CompletionJob --------------------------------------------
  void start_job(HttpResponse resp) {
    job_ = std::move(resp.job);
    response_done_ = false;
    if (job_->streaming()) send(event_stream_head(keep_alive_));
    watch_for_disconnect();
    std::weak_ptr<Session> weak = weak_from_this();
    job_->set_listener([weak] {
      if (auto self = weak.lock()) self->notify();
    });
  }

  // Engine thread: coalesce wake-ups into one poll on the strand.
  void notify() {
    if (poll_posted_.exchange(true)) return;
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->poll_posted_.store(false);
      self->pump();
    });
  }

  void pump() {
    if (!job_ || response_done_ || closed_) return;
    std::string bytes = job_->poll();
    if (job_->streaming()) {
      std::string out = http_chunk(bytes);
      if (job_->done()) {
        out += kLastChunk;
        response_done_ = true;
      }
      if (!out.empty()) send(std::move(out));
    } else if (job_->done()) {
      response_done_ = true;
      send(format_http_response(job_->status(), "application/json", {}, bytes, keep_alive_));
    }
  }

  // While a job runs the connection is otherwise silent: a read tells us when the client
  // goes away (then the request is cancelled). Bytes that arrive are kept for the next request.
  void watch_for_disconnect() {
    watching_ = true;
    // Only the read timer changes while a write is pending; a streaming request may be long.
    stream_.expires_after(std::chrono::hours(24));
    stream_.async_read_some(
        buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
          self->on_watch(ec, n);
        });
  }

  void on_watch(beast::error_code ec, size_t n) {
    watching_ = false;
    if (!ec) {
      buffer_.commit(n);
      if (buffer_.size() > opts().max_body_bytes + opts().max_header_bytes) return fail();
      if (job_) return watch_for_disconnect();
      if (next_after_watch_) return read_header();
      return;
    }
    if (ec == net::error::operation_aborted && next_after_watch_) return read_header();
    fail();
  }

  // ---- writing ---------------------------------------------------------------------------
  void send(std::string bytes) {
    pending_ += bytes;
    if (writing_ || closed_) return;
    write_pending();
  }

  void write_pending() {
    writing_ = true;
    writing_buf_ = std::move(pending_);
    pending_.clear();
    stream_.expires_after(std::chrono::seconds(opts().write_timeout_s));
    net::async_write(stream_, net::buffer(writing_buf_),
                     beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, size_t) {
    writing_ = false;
    if (ec) return fail();
    if (!pending_.empty()) return write_pending();
    if (response_done_) end_of_response();
  }

  void end_of_response() {
    job_.reset();  // ends the request's accounting
    response_done_ = false;
    head_ = false;
    if (!keep_alive_) return close();
    if (watching_) {
      next_after_watch_ = true;
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    next_after_watch_ = false;
    read_header();
  }

  // The client is gone or too slow: stop its request and drop the connection.
  void fail() {
    if (job_) {
      job_->cancel();
      job_.reset();
    }
    close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  Shared& shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<CompletionJob> job_;
  std::string pending_, writing_buf_, continue_;
  std::atomic<bool> poll_posted_{false};
  bool keep_alive_ = true, head_ = false, response_done_ = false, writing_ = false;
  bool watching_ = false, next_after_watch_ = false, closed_ = false;
};

}  // namespace

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions o, ApiService& service)
      : ioc(std::max(1, o.threads)), acceptor(net::make_strand(ioc)), retry(ioc) {
    shared.options = std::move(o);
    shared.service = &service;
  }

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        // Out of descriptors (or similar): back off instead of spinning.
        log::warn("accept failed: ", ec.message(), " (", shared.connections.load(),
                  " connections open)");
        retry.expires_after(std::chrono::milliseconds(100));
        retry.async_wait([this](beast::error_code) { accept(); });
        return;
      }
      beast::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(s), shared)->start();
      accept();
    });
  }

  Shared shared;
  net::io_context ioc;
  tcp::acceptor acceptor;
  net::steady_timer retry;
  std::vector<std::thread> threads;
  uint16_t port = 0;
  bool stopped = false;
};

HttpServer::HttpServer(HttpServerOptions options, ApiService& service)
    : impl_(std::make_unique<Impl>(std::move(options), service)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  const HttpServerOptions& o = impl_->shared.options;
  beast::error_code ec;
  const auto address = net::ip::make_address(o.host, ec);
  MIXSERVE_CHECK(!ec, "--host ", o.host, " is not an IP address (", ec.message(), ")");
  const tcp::endpoint endpoint(address, o.port);
  tcp::acceptor& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  MIXSERVE_CHECK(!ec, "cannot listen on ", o.host, ":", o.port, ": ", ec.message(),
                 " (is another server using the port? choose one with --port)");
  impl_->port = a.local_endpoint().port();
  impl_->accept();
  for (int i = 0; i < std::max(1, o.threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
}

uint16_t HttpServer::port() const { return impl_->port; }

int64_t HttpServer::connections() const { return impl_->shared.connections.load(); }

void HttpServer::stop_accepting() {
  std::promise<void> done;
  net::dispatch(impl_->acceptor.get_executor(), [this, &done] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->retry.cancel();
    done.set_value();
  });
  if (!impl_->threads.empty()) done.get_future().wait();
}

void HttpServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->ioc.stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
}

uint64_t raise_open_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit want = lim;
    want.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) lim = want;
  }
  return uint64_t(lim.rlim_cur);
}

}  // namespace mixserve::server
