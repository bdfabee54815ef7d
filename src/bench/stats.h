// Summary statistics of latency samples: mean, min, max and percentiles.
//
// Percentiles interpolate linearly between the two nearest ranks, as numpy.percentile's
// default ("linear", method 7 of Hyndman & Fan): rank = q/100 * (n - 1) over the sorted samples.
// That is what vLLM's and TensorRT-LLM's benchmark scripts report, so numbers compare.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace mixserve::bench {

struct Summary {
  int64_t count = 0;  // samples; every other field is 0 when count == 0
  double mean = 0.0;
  double p50 = 0.0;
  double p90 = 0.0;
  double p99 = 0.0;
  double min = 0.0;
  double max = 0.0;
};

// q in [0, 100]; `sorted` ascending and non-empty.
double percentile_sorted(const std::vector<double>& sorted, double q);
// Sorts a copy; throws mixserve::Error on an empty sample or q outside [0, 100].
double percentile(std::vector<double> values, double q);
Summary summarize(std::vector<double> values);

// "mean", "p50", "p90", "p99", "min" or "max" of a summary; throws naming the choices.
double summary_stat(const Summary& s, std::string_view stat);

}  // namespace mixserve::bench
