#include "engine/device_sampling.h"

#include <algorithm>
#include <unordered_map>

namespace mixserve {

void append_sampling_row(const SamplingParams& p, const SampleContext& ctx, SamplingBatch* b) {
  SamplingRow row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.min_p = p.min_p;
  row.repetition_penalty = p.repetition_penalty;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  row.sample_index = ctx.sample_index;
  row.seed = ctx.seed;
  row.draw_index = static_cast<int64_t>(ctx.output_ids.size());
  row.logprobs = p.logprobs;
  b->rows.push_back(row);

  // One entry per distinct id: its flags and output count (the host applies the repetition
  // penalty over prompt + output, presence / frequency over output, then suppression).
  std::unordered_map<int32_t, PenaltyEntry> by_id;
  auto entry = [&](int32_t id) -> PenaltyEntry& {
    PenaltyEntry& e = by_id[id];
    e.id = id;
    return e;
  };
  if (p.repetition_penalty != 1.0f) {
    for (int32_t id : ctx.prompt_ids) entry(id).flags |= PenaltyEntry::kInHistory;
    for (int32_t id : ctx.output_ids) entry(id).flags |= PenaltyEntry::kInHistory;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    for (int32_t id : ctx.output_ids) ++entry(id).output_count;
  }
  for (int32_t id : ctx.suppressed_ids) entry(id).flags |= PenaltyEntry::kSuppressed;
  std::vector<PenaltyEntry> sorted;
  sorted.reserve(by_id.size());
  for (const auto& [id, e] : by_id) sorted.push_back(e);
  std::sort(sorted.begin(), sorted.end(),
            [](const PenaltyEntry& a, const PenaltyEntry& c) { return a.id < c.id; });
  b->entries.insert(b->entries.end(), sorted.begin(), sorted.end());
  b->entry_offsets.push_back(static_cast<int32_t>(b->entries.size()));
}

}  // namespace mixserve
