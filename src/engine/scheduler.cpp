#include "engine/scheduler.h"

#include <algorithm>

#include "util/error.h"

namespace mixserve {

void Scheduler::on_computed(const ScheduleResult& result) {
  for (const ScheduledChunk& c : result.chunks) {
    c.seq->num_computed += c.num_tokens;
    blocks_.commit_computed(c.seq->tokens, c.seq->num_computed, c.seq->kv);
  }
}

void Scheduler::remove(Sequence* seq) {
  blocks_.free(seq->kv);
  auto r = std::find(running_.begin(), running_.end(), seq);
  if (r != running_.end()) running_.erase(r);
  auto w = std::find(waiting_.begin(), waiting_.end(), seq);
  if (w != waiting_.end()) waiting_.erase(w);
}

bool Scheduler::admit_head(int32_t budget, ScheduleResult& result) {
  Sequence* s = waiting_.front();
  const int32_t cached = blocks_.allocate_for_prefill(s->tokens, budget, s->kv);
  if (cached < 0) return false;
  waiting_.pop_front();
  s->num_computed = cached;
  if (s->num_preemptions == 0) s->num_cached_prompt_tokens = cached;
  const int32_t n = std::min(s->total_tokens() - cached, budget);
  running_.push_back(s);
  result.chunks.push_back({s, n, cached + n == s->total_tokens()});
  result.num_batched_tokens += n;
  return true;
}

void Scheduler::preempt_last_running(ScheduleResult& result) {
  Sequence* victim = running_.back();
  running_.pop_back();
  blocks_.free(victim->kv);
  victim->num_computed = 0;
  ++victim->num_preemptions;
  waiting_.push_front(victim);
  result.preempted.push_back(victim);
}

ScheduleResult FcfsPreemptScheduler::schedule() {
  ScheduleResult r;
  int32_t budget = limits_.max_num_batched_tokens;
  // Running sequences (decodes and unfinished prefills), oldest first.
  for (size_t i = 0; i < running_.size(); ++i) {
    if (budget == 0 || int32_t(r.chunks.size()) >= limits_.max_num_seqs) break;
    Sequence* s = running_[i];
    const int32_t n = std::min(s->total_tokens() - s->num_computed, budget);
    bool self_preempted = false;
    while (!blocks_.append_slots(s->kv, s->num_computed + n)) {
      self_preempted = running_.back() == s;
      preempt_last_running(r);
      if (self_preempted) break;
    }
    if (self_preempted) break;
    r.chunks.push_back({s, n, s->num_computed + n == s->total_tokens()});
    r.num_batched_tokens += n;
    budget -= n;
  }
  // New admissions, first come first served; none in a step that had to preempt (the cache
  // is full, and admitting now would only thrash).
  if (!r.preempted.empty()) return r;
  while (!waiting_.empty() && budget > 0 && int32_t(running_.size()) < limits_.max_num_seqs &&
         int32_t(r.chunks.size()) < limits_.max_num_seqs) {
    const int32_t before = r.num_batched_tokens;
    if (!admit_head(budget, r)) break;
    budget -= r.num_batched_tokens - before;
  }
  return r;
}

ScheduleResult NoEvictScheduler::schedule() {
  ScheduleResult r;
  int32_t budget = limits_.max_num_batched_tokens;
  // Blocks the running sequences may still take, reserved so that none ever waits for one.
  int32_t reserved = 0;
  for (Sequence* s : running_) {
    reserved += std::max(0, blocks_.blocks_for_tokens(s->max_total_tokens()) -
                                int32_t(s->kv.blocks.size()));
  }
  for (Sequence* s : running_) {
    if (budget == 0 || int32_t(r.chunks.size()) >= limits_.max_num_seqs) break;
    const int32_t n = std::min(s->total_tokens() - s->num_computed, budget);
    const int32_t before = int32_t(s->kv.blocks.size());
    MIXSERVE_CHECK(blocks_.append_slots(s->kv, s->num_computed + n),
                   "no-evict scheduler: a reserved block was missing (bookkeeping bug)");
    reserved -= int32_t(s->kv.blocks.size()) - before;
    r.chunks.push_back({s, n, s->num_computed + n == s->total_tokens()});
    r.num_batched_tokens += n;
    budget -= n;
  }
  while (!waiting_.empty() && budget > 0 && int32_t(running_.size()) < limits_.max_num_seqs &&
         int32_t(r.chunks.size()) < limits_.max_num_seqs) {
    const Sequence* head = waiting_.front();
    // Conservative: counts the whole sequence as fresh blocks (cache hits only lower it).
    const int32_t need = blocks_.blocks_for_tokens(head->max_total_tokens());
    if (need > blocks_.num_free_blocks() - reserved) break;
    const int32_t before = r.num_batched_tokens;
    if (!admit_head(budget, r)) break;
    const Sequence* s = running_.back();
    reserved += need - int32_t(s->kv.blocks.size());
    budget -= r.num_batched_tokens - before;
  }
  return r;
}

std::unique_ptr<Scheduler> make_scheduler(const std::string& policy, BlockManager& blocks,
                                          SchedulerLimits limits) {
  MIXSERVE_CHECK(limits.max_num_seqs >= 1, "--max-num-seqs must be >= 1, got ",
                 limits.max_num_seqs);
  MIXSERVE_CHECK(limits.max_num_batched_tokens >= 1, "--max-num-batched-tokens must be >= 1, got ",
                 limits.max_num_batched_tokens);
  if (policy == "fcfs") return std::make_unique<FcfsPreemptScheduler>(blocks, limits);
  if (policy == "no-evict") return std::make_unique<NoEvictScheduler>(blocks, limits);
  throw_error("--scheduler-policy: unknown policy '", policy, "' (use fcfs or no-evict)");
}

}  // namespace mixserve
