// Scheduler: picks, every step, which sequences run and how many tokens each computes.
//
// A step has a token budget (max_num_batched_tokens) and a sequence limit (max_num_seqs).
// A prefill chunk, a whole prompt and a decode token are the same thing: the next tokens of
// a sequence whose KV is not computed yet. Policies differ in how they admit waiting
// sequences and what they do when the cache runs out:
//  - FcfsPreemptScheduler ("fcfs"): running sequences first, in admission order, then waiting
//    ones first-come-first-served, as much as fits. When a running sequence cannot get a
//    block, the most recently admitted running sequence is preempted: its blocks are freed and
//    it returns to the front of the waiting queue, to be recomputed later (its generated
//    tokens are kept and recomputed as part of the prompt).
//  - NoEvictScheduler ("no-evict"): admits a sequence only when the blocks it can ever need
//    (prompt + max_tokens) fit next to what the running ones may still need; never preempts.
// Both guarantee progress for any sequence whose max_total_tokens fits the whole cache (the
// engine rejects the others at submission).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"

namespace mixserve {

struct SchedulerLimits {
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t num_tokens = 0;  // computes tokens [seq->num_computed, + num_tokens)
  bool sample = false;     // the chunk reaches the end of the sequence: sample a token
};

struct ScheduleResult {
  std::vector<ScheduledChunk> chunks;  // running ones in admission order, then new admissions
  std::vector<Sequence*> preempted;    // in the order they were preempted
  int32_t num_batched_tokens = 0;
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  Scheduler(BlockManager& blocks, SchedulerLimits limits) : blocks_(blocks), limits_(limits) {}
  virtual ~Scheduler() = default;

  void add(Sequence* seq) { waiting_.push_back(seq); }
  // Ahead of every waiting sequence (siblings of a request whose prompt was just computed).
  void add_front(Sequence* seq) { waiting_.push_front(seq); }
  virtual ScheduleResult schedule() = 0;
  // After the forward pass: advances num_computed and registers newly full blocks.
  void on_computed(const ScheduleResult& result);
  // Finished or aborted (running or waiting): frees its blocks, forgets it.
  void remove(Sequence* seq);

  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::vector<Sequence*>& running() const { return running_; }
  const SchedulerLimits& limits() const { return limits_; }

 protected:
  // Moves the waiting head to running with its cached prefix and a first chunk of at most
  // `budget` tokens; false if the blocks do not suffice.
  bool admit_head(int32_t budget, ScheduleResult& result);
  void preempt_last_running(ScheduleResult& result);

  BlockManager& blocks_;
  SchedulerLimits limits_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order
};

class FcfsPreemptScheduler : public Scheduler {
 public:
  using Scheduler::Scheduler;
  ScheduleResult schedule() override;
};

class NoEvictScheduler : public Scheduler {
 public:
  using Scheduler::Scheduler;
  ScheduleResult schedule() override;
};

// policy: "fcfs" or "no-evict"; throws mixserve::Error naming the flag otherwise.
std::unique_ptr<Scheduler> make_scheduler(const std::string& policy, BlockManager& blocks,
                                          SchedulerLimits limits);

}  // namespace mixserve
