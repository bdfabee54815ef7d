#include "backend/backend.h"

#include "util/error.h"

namespace mixserve {

void Backend::forward_and_sample(const BatchPlan&, const SamplingBatch&, SampledTokens*) {
  throw_error("backend ", name(),
              " does not sample on its device (supports_device_sampling() is false); "
              "call forward() and sample on the host");
}

void Backend::submit_and_sample(const BatchPlan& plan, const SamplingBatch& batch) {
  MIXSERVE_CHECK(!in_flight_, "backend ", name(),
                 ": submit_and_sample while the previous step is not collected");
  forward_and_sample(plan, batch, &submitted_);
  in_flight_ = true;
}

void Backend::collect_sampled(SampledTokens* out) {
  MIXSERVE_CHECK(in_flight_, "backend ", name(), ": collect_sampled without a submitted step");
  in_flight_ = false;
  *out = std::move(submitted_);
  submitted_ = SampledTokens{};
}

}  // namespace mixserve
