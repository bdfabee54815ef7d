#include "backend/backend.h"

#include "util/error.h"

namespace mixserve {

void Backend::forward_and_sample(const BatchPlan&, const SamplingBatch&, SampledTokens*) {
  throw_error("backend ", name(),
              " does not sample on its device (supports_device_sampling() is false); "
              "call forward() and sample on the host");
}

}  // namespace mixserve
