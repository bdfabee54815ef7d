// Prometheus metrics of the server, named like vLLM's (mixserve:…); rendered in the text
// exposition format for GET /metrics. Thread-safe. prometheus-cpp stays inside metrics.cpp.
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"

namespace mixserve::server {

class ServerMetrics {
 public:
  explicit ServerMetrics(std::string model_name);
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  void observe_queue_time(double seconds);
  void observe_time_to_first_token(double seconds);
  void observe_time_per_output_token(double seconds);
  void observe_e2e_latency(double seconds);
  void count_finished(const std::string& finish_reason);  // stop, length, abort, error
  void count_error(int http_status);

  // Gauges and engine counters are read from `stats` (or left at zero when null) at scrape
  // time; the result is the text exposition format.
  std::string render(const EngineStats* stats);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mixserve::server
