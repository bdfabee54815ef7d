// Relative L2 distance of a result from its reference, as the kernel benchmarks' self-checks
// and the CUDA tests measure it.
#pragma once

#include <algorithm>
#include <cmath>
#include <span>

namespace mixserve {

// ||got - ref|| / ||ref|| with float64 sums (over ref.size() elements; a zero reference counts
// as 1e-30); infinite as soon as got holds a NaN or an infinity.
inline double rel_l2(std::span<const float> got, std::span<const float> ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace mixserve
