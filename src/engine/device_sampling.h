// The host side of device sampling: turns one row's SamplingParams and SampleContext (what the
// host Sampler takes) into a SamplingRow and its penalty entries, so the device sampler sees
// exactly the inputs sample_token() would.
#pragma once

#include "backend/sampling_batch.h"
#include "engine/request.h"
#include "engine/sampler.h"

namespace mixserve {

// Appends row batch->rows.size() for a sequence sampled with `params` in context `ctx`.
void append_sampling_row(const SamplingParams& params, const SampleContext& ctx,
                         SamplingBatch* batch);

}  // namespace mixserve
