#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "util/error.h"

namespace mixserve::bench {

double percentile_sorted(const std::vector<double>& sorted, double q) {
  MIXSERVE_CHECK(!sorted.empty(), "percentile of an empty sample");
  MIXSERVE_CHECK(q >= 0.0 && q <= 100.0, "percentile ", q, " is outside [0, 100]");
  const double rank = q / 100.0 * double(sorted.size() - 1);
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - double(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  return percentile_sorted(values, q);
}

Summary summarize(std::vector<double> values) {
  Summary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.count = int64_t(values.size());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
  s.p50 = percentile_sorted(values, 50.0);
  s.p90 = percentile_sorted(values, 90.0);
  s.p99 = percentile_sorted(values, 99.0);
  s.min = values.front();
  s.max = values.back();
  return s;
}

double summary_stat(const Summary& s, std::string_view stat) {
  if (stat == "mean") return s.mean;
  if (stat == "p50") return s.p50;
  if (stat == "p90") return s.p90;
  if (stat == "p99") return s.p99;
  if (stat == "min") return s.min;
  if (stat == "max") return s.max;
  throw_error("latency statistic '", std::string(stat),
              "' is not one of mean, p50, p90, p99, min, max");
}

}  // namespace mixserve::bench
