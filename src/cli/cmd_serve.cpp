// `mixserve serve`: the OpenAI-compatible HTTP server (docs/server.md).
//
// It listens before the model loads (/health answers 503 until it is ready), loads on a
// separate thread, and waits for SIGINT/SIGTERM on the main thread: then it stops accepting,
// lets running requests finish for --shutdown-grace-seconds, aborts the rest and exits 0.
#include <CLI/CLI.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <thread>

#include "cli/command.h"
#include "cli/engine_flags.h"
#include "server/api_service.h"
#include "server/http_server.h"
#include "util/log.h"

namespace mixserve::cli {
namespace {

struct ServeFlags {
  EngineFlags engine;
  server::HttpServerOptions http;
  server::ServiceOptions service;
  double shutdown_grace_s = 30.0;
};

// Waits up to `timeout` for one of `set`'s signals; returns it, or 0 on timeout.
int wait_signal(const sigset_t& set, std::chrono::milliseconds timeout) {
  timespec ts{};
  ts.tv_sec = timeout.count() / 1000;
  ts.tv_nsec = (timeout.count() % 1000) * 1000000L;
  const int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

int run_serve(ServeFlags& f) {
  if (!runs_rank_zero(f.engine.backend)) {
    // A worker rank of a multi-process launch: no HTTP server; serve rank 0's steps until its
    // shutdown (or its failure, which throws).
    make_engine(f.engine);
    return 0;
  }
  if (f.service.served_model_name.empty()) f.service.served_model_name = f.engine.backend.model;
  const uint64_t files = server::raise_open_file_limit();
  if (files < 4096) {
    log::warn("open-file limit is ", files, ": at most that many connections (raise ulimit -n)");
  }

  // Every thread started from here on inherits this mask, so only sigwait sees the signals.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);  // the loader failed
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  server::ApiService service(f.service);
  server::HttpServer http(f.http, service);
  http.start();
  log::info("listening on http://", f.http.host, ":", http.port(), " (", f.http.threads,
            " I/O threads); loading ", f.engine.backend.model);

  EngineBundle bundle;
  std::string load_error;
  std::thread loader([&] {
    try {
      bundle = make_engine(f.engine);
      bundle.engine->start();
      service.set_ready(bundle.engine.get(), bundle.tokenizer);
      log::info("ready: serving model '", f.service.served_model_name, "'");
    } catch (const std::exception& e) {
      load_error = e.what();
      kill(getpid(), SIGUSR1);
    }
  });

  int sig = 0;
  while (sig == 0) sig = wait_signal(set, std::chrono::milliseconds(1000));
  http.stop_accepting();
  service.set_draining();
  loader.join();
  if (sig == SIGUSR1) {
    http.stop();
    log::error("loading the model failed: ", load_error);
    return 1;
  }
  log::info("signal ", sig, ": not accepting new requests; ", service.requests_in_flight(),
            " running (grace period ", f.shutdown_grace_s, " s)");
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(int64_t(f.shutdown_grace_s * 1000));
  // A second signal ends the grace period early.
  while (service.requests_in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    if (wait_signal(set, std::chrono::milliseconds(50)) != 0) break;
  }
  if (bundle.engine) {
    if (service.requests_in_flight() > 0) {
      log::warn("aborting ", service.requests_in_flight(), " requests still running");
    }
    bundle.engine->shutdown(false);
    // Aborted requests send their last chunk; give the connections a moment to flush it.
    const auto flush_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (service.requests_in_flight() > 0 && std::chrono::steady_clock::now() < flush_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  http.stop();
  log::info("stopped");
  return 0;
}

const CommandRegistrar kServe(
    "serve", "Serve the OpenAI-compatible HTTP API (docs/server.md)",
    [](CLI::App& sub) -> std::function<int()> {
      auto f = std::make_shared<ServeFlags>();
      f->engine.add_to(sub);
      f->http.threads = std::clamp(int(std::thread::hardware_concurrency()) / 4, 2, 4);
      sub.add_option("--host", f->http.host, "Address to listen on (0.0.0.0 for every interface)")
          ->capture_default_str();
      sub.add_option("--port", f->http.port, "TCP port (0 = any free port)")->capture_default_str();
      sub.add_option("--api-key", f->service.api_key,
                     "Require 'Authorization: Bearer KEY' on /v1/*, /tokenize and /detokenize")
          ->envname("MIXSERVE_API_KEY");
      sub.add_option("--served-model-name", f->service.served_model_name,
                     "The model name clients use (default: the --model argument)");
      sub.add_option("--http-threads", f->http.threads, "I/O threads of the HTTP server")
          ->check(CLI::Range(1, 64))
          ->capture_default_str();
      sub.add_option("--max-queued-requests", f->service.max_queued_requests,
                     "Requests waiting for the engine at most; more get 429 with Retry-After")
          ->check(CLI::Range(0, 1 << 24))
          ->capture_default_str();
      sub.add_option("--shutdown-grace-seconds", f->shutdown_grace_s,
                     "On SIGTERM/SIGINT, how long running requests may take to finish")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
      sub.add_option("--max-body-bytes", f->http.max_body_bytes,
                     "Largest request body accepted (larger: 413)")
          ->check(CLI::Range(size_t{1024}, size_t{1} << 32))
          ->capture_default_str();
      sub.add_option("--max-header-bytes", f->http.max_header_bytes,
                     "Largest request header block accepted (larger: 431)")
          ->check(CLI::Range(size_t{1024}, size_t{1} << 24))
          ->capture_default_str();
      sub.add_option("--read-timeout-seconds", f->http.read_timeout_s,
                     "Time to receive a whole request; also how long an idle connection stays")
          ->check(CLI::Range(1, 86400))
          ->capture_default_str();
      sub.add_option("--write-timeout-seconds", f->http.write_timeout_s,
                     "Time one write may take; a client that stops reading is dropped and its "
                     "request cancelled")
          ->check(CLI::Range(1, 86400))
          ->capture_default_str();
      return [f] { return run_serve(*f); };
    });

}  // namespace
}  // namespace mixserve::cli
