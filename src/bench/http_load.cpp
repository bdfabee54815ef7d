// Boost.Beast compiles slowly: this is the only file of src/bench/ that includes it.
#include "bench/http_load.h"

#include <sys/resource.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>

#include "bench/progress.h"
#include "util/error.h"

namespace mixserve::bench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

// Thousands of concurrent streams need as many sockets: lift the soft limit to the hard one.
void raise_open_file_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

struct Shared {
  const LoadOptions& options;
  const std::vector<WorkloadItem>& items;
  std::vector<std::string> bodies;  // built before the clock starts
  net::io_context io;
  tcp::resolver::results_type endpoints;
  HttpUrl url;
  std::vector<RequestRecord> records;
  int64_t in_flight = 0;
  int64_t finished = 0;
  std::deque<size_t> pending;  // arrived, waiting for a free concurrency slot
  Clock::time_point last_end;
  ProgressBar* progress = nullptr;
  std::function<void()> on_finished;  // starts a pending request, stops the progress timer

  Shared(const LoadOptions& o, const std::vector<WorkloadItem>& i) : options(o), items(i) {}
};

// One request on its own connection: connect, write, then read the body incrementally,
// timestamping every token-carrying SSE event as it is parsed.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Shared& shared, size_t index)
      : s_(shared), index_(index), stream_(shared.io), record_(shared.records[index]) {}

  void start() {
    start_ = Clock::now();
    req_.method(http::verb::post);
    req_.target(s_.url.target);
    req_.version(11);
    req_.set(http::field::host, s_.url.host + ":" + s_.url.port);
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::accept, s_.options.api.stream ? "text/event-stream" : "application/json");
    if (!s_.options.api_key.empty())
      req_.set(http::field::authorization, "Bearer " + s_.options.api_key);
    req_.body() = s_.bodies[index_];
    req_.prepare_payload();
    // No limit; not boost::none, which Boost 1.74 compares as smaller than any Content-Length.
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
    touch();
    stream_.async_connect(s_.endpoints, [self = shared_from_this()](beast::error_code ec,
                                                                    const tcp::endpoint&) {
      self->on_connect(ec);
    });
  }

 private:
  void touch() {
    stream_.expires_after(std::chrono::milliseconds(int64_t(s_.options.timeout_s * 1000.0)));
  }

  void on_connect(beast::error_code ec) {
    if (ec) return fail("connect: " + ec.message());
    touch();
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->on_write(ec);
    });
  }

  void on_write(beast::error_code ec) {
    if (ec) return fail("write: " + ec.message());
    touch();
    http::async_read_header(stream_, buffer_, parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->on_header(ec);
                            });
  }

  void on_header(beast::error_code ec) {
    if (ec) return fail("read header: " + ec.message());
    status_ = parser_.get().result_int();
    read_body();
  }

  void read_body() {
    if (parser_.is_done()) return complete();
    parser_.get().body().data = chunk_.data();
    parser_.get().body().size = chunk_.size();
    touch();
    // read_some: hand over whatever one socket read brought; async_read would wait until the
    // body buffer is full, delaying tokens by up to 8 KiB of stream.
    http::async_read_some(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->on_body(ec);
                     });
  }

  void on_body(beast::error_code ec) {
    if (ec == http::error::need_buffer) ec = {};  // the chunk buffer is full: not an error
    if (ec) return fail("read body: " + ec.message());
    const size_t n = chunk_.size() - parser_.get().body().size;
    consume(std::string_view(chunk_.data(), n));
    if (!record_.error.empty()) return fail(record_.error);
    read_body();
  }

  void consume(std::string_view bytes) {
    if (status_ != 200 || !s_.options.api.stream) {
      body_.append(bytes);
      return;
    }
    for (const std::string& data : sse_.feed(bytes)) on_event(data);
  }

  void on_event(const std::string& data) {
    const ApiMessage m = parse_api_message(data, s_.options.api.kind);
    if (m.done) {
      saw_done_ = true;
      return;
    }
    if (!m.error.empty()) {
      record_.error = "server error: " + m.error;
      return;
    }
    if (m.prompt_tokens) usage_prompt_ = m.prompt_tokens;
    if (m.completion_tokens) usage_completion_ = m.completion_tokens;
    // A chunk with text (or, from a model without a tokenizer, token ids) is a token arrival.
    if (!m.has_choice || (m.text.empty() && m.num_token_ids == 0)) return;
    const auto now = Clock::now();
    if (!record_.has_first_token) {
      record_.has_first_token = true;
      record_.ttft_ms = ms_between(start_, now);
    } else {
      record_.itl_ms.push_back(ms_between(last_token_, now));
    }
    last_token_ = now;
    ++chunks_;
  }

  void complete() {
    const auto now = Clock::now();
    record_.e2e_ms = ms_between(start_, now);
    const WorkloadItem& item = s_.items[index_];
    if (status_ != 200) return fail("HTTP " + std::to_string(status_) + ": " + body_.substr(0, 200));
    if (s_.options.api.stream) {
      if (auto last = sse_.finish()) on_event(*last);
      if (!record_.error.empty()) return fail(record_.error);
      if (!saw_done_) return fail("stream ended without data: [DONE]");
      record_.output_tokens = usage_completion_ ? *usage_completion_ : chunks_;
    } else {
      const ApiMessage m = parse_api_message(body_, s_.options.api.kind);
      if (!m.error.empty()) return fail("server error: " + m.error);
      usage_prompt_ = m.prompt_tokens;
      // Without usage, trust max_tokens: ignore_eos makes the output exactly that long.
      record_.output_tokens = m.completion_tokens ? *m.completion_tokens : item.output_len;
    }
    record_.input_tokens = usage_prompt_ ? *usage_prompt_ : item.input_len;
    record_.ok = true;
    done(now);
  }

  void fail(const std::string& why) {
    record_.ok = false;
    record_.error = why;
    const auto now = Clock::now();
    record_.e2e_ms = ms_between(start_, now);
    done(now);
  }

  void done(Clock::time_point now) {
    if (finished_) return;
    finished_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    s_.last_end = now;
    --s_.in_flight;
    ++s_.finished;
    s_.on_finished();
  }

  Shared& s_;
  size_t index_;
  beast::tcp_stream stream_;
  RequestRecord& record_;
  http::request<http::string_body> req_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  std::array<char, 8192> chunk_{};
  unsigned status_ = 0;
  std::string body_;
  SseParser sse_;
  bool saw_done_ = false;
  bool finished_ = false;
  int64_t chunks_ = 0;
  std::optional<int64_t> usage_prompt_, usage_completion_;
  Clock::time_point start_, last_token_;
};

}  // namespace

HttpUrl parse_http_url(const std::string& url) {
  const std::string scheme = "http://";
  MIXSERVE_CHECK(url.rfind("https://", 0) != 0, "--url ", url,
                 ": https is not supported; point it at the server's plain-HTTP port");
  MIXSERVE_CHECK(url.rfind(scheme, 0) == 0, "--url ", url,
                 ": expected http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8000/v1/completions");
  const std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  HttpUrl u;
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
    u.port = "80";
  }
  MIXSERVE_CHECK(!u.host.empty(), "--url ", url, ": no host");
  MIXSERVE_CHECK(!u.port.empty() && u.port.find_first_not_of("0123456789") == std::string::npos,
                 "--url ", url, ": the port '", u.port, "' is not a number");
  return u;
}

std::vector<double> poisson_arrivals(int64_t n, double rate, uint64_t seed) {
  MIXSERVE_CHECK(rate > 0.0, "--request-rate ", rate, " must be positive (or inf)");
  std::vector<double> t(size_t(std::max<int64_t>(n, 0)), 0.0);
  if (std::isinf(rate)) return t;
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> gap(rate);
  for (size_t i = 1; i < t.size(); ++i) t[i] = t[i - 1] + gap(rng);
  return t;
}

LoadResult run_load(const LoadOptions& options, const std::vector<WorkloadItem>& items,
                    ProgressBar* progress) {
  MIXSERVE_CHECK(options.max_concurrency >= 0, "--max-concurrency must be >= 0");
  raise_open_file_limit();
  Shared s(options, items);
  s.url = parse_http_url(options.url);
  s.progress = progress;
  s.records.resize(items.size());
  for (const WorkloadItem& item : items) {
    MIXSERVE_CHECK(options.api.kind != ApiKind::kChat || !item.prompt_text.empty(),
                   "the chat API takes text prompts: use --text-prompt (or a text dataset)");
    s.bodies.push_back(build_request_body(item, options.api));
  }
  tcp::resolver resolver(s.io);
  beast::error_code ec;
  s.endpoints = resolver.resolve(s.url.host, s.url.port, ec);
  MIXSERVE_CHECK(!ec, "--url ", options.url, ": cannot resolve ", s.url.host, ": ", ec.message());

  const std::vector<double> arrivals =
      poisson_arrivals(int64_t(items.size()), options.request_rate, options.seed);
  const int64_t cap = options.max_concurrency > 0 ? options.max_concurrency : INT64_MAX;
  auto launch = [&s](size_t i) {
    ++s.in_flight;
    std::make_shared<Session>(s, i)->start();
  };
  net::steady_timer arrival_timer(s.io), progress_timer(s.io);
  std::function<void()> tick = [&] {
    if (s.progress) s.progress->update(s.finished);
    // cancel() misses a wait whose handler is already queued: stop here too, or run() never ends.
    if (s.finished == int64_t(items.size())) return;
    progress_timer.expires_after(std::chrono::milliseconds(100));
    progress_timer.async_wait([&](beast::error_code e) {
      if (!e) tick();
    });
  };
  s.on_finished = [&] {
    if (!s.pending.empty() && s.in_flight < cap) {
      const size_t next = s.pending.front();
      s.pending.pop_front();
      launch(next);
    }
    if (s.finished == int64_t(items.size())) progress_timer.cancel();
  };

  const double cpu0 = cpu_seconds();
  const auto t0 = Clock::now();
  size_t next_arrival = 0;
  // Sends every request whose arrival time has come, then sleeps until the next one.
  std::function<void()> arrive = [&] {
    const double now_s = std::chrono::duration<double>(Clock::now() - t0).count();
    while (next_arrival < arrivals.size() && arrivals[next_arrival] <= now_s) {
      const size_t i = next_arrival++;
      if (s.in_flight < cap) launch(i);
      else s.pending.push_back(i);
    }
    if (next_arrival == arrivals.size()) return;
    arrival_timer.expires_at(t0 + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(arrivals[next_arrival])));
    arrival_timer.async_wait([&](beast::error_code e) {
      if (!e) arrive();
    });
  };
  s.last_end = t0;
  if (!items.empty()) {
    arrive();
    tick();
  }
  s.io.run();
  LoadResult result;
  result.duration_s = std::chrono::duration<double>(s.last_end - t0).count();
  result.client_cpu_s = cpu_seconds() - cpu0;
  result.records = std::move(s.records);
  if (progress) {
    progress->update(s.finished);
    progress->finish();
  }
  return result;
}

}  // namespace mixserve::bench
