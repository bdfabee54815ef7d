// The load generator of `mixserve bench serve`: sends a workload to an OpenAI-compatible URL
// with Poisson arrivals (or all at once) under an optional concurrency cap, and measures every
// request as its bytes arrive. Asynchronous I/O on one thread (Boost.Beast, which lives only in
// http_load.cpp), one connection per request, thousands of streams at once.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "bench/openai_protocol.h"
#include "bench/run_metrics.h"
#include "bench/workload.h"

namespace mixserve::bench {

class ProgressBar;

struct HttpUrl {
  std::string host;
  std::string port;    // "80" when the URL names none
  std::string target;  // path and query, "/" when empty
};
// http://HOST[:PORT][/PATH]; https is refused with a message (put a plain-HTTP port in front).
HttpUrl parse_http_url(const std::string& url);

struct LoadOptions {
  std::string url;  // the endpoint, e.g. http://127.0.0.1:8000/v1/completions
  ApiRequestOptions api;
  double request_rate = std::numeric_limits<double>::infinity();  // per second; inf = at once
  int32_t max_concurrency = 0;  // requests in flight at most; 0 = no cap
  uint64_t seed = 0;            // of the arrival times
  std::string api_key;          // sent as "Authorization: Bearer KEY" when set
  double timeout_s = 600.0;     // per request, idle time between bytes
};

struct LoadResult {
  std::vector<RequestRecord> records;  // one per workload item, in workload order
  double duration_s = 0.0;             // first send to last completion
  double client_cpu_s = 0.0;           // user + system CPU of this process during the run
};

LoadResult run_load(const LoadOptions& options, const std::vector<WorkloadItem>& items,
                    ProgressBar* progress);

// Seconds after the start at which each request is sent: exponential gaps of mean 1/rate
// (Poisson arrivals), the first at 0; all 0 for an infinite rate.
std::vector<double> poisson_arrivals(int64_t n, double rate, uint64_t seed);

}  // namespace mixserve::bench
