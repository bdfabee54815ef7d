// Scheduler policies on a 200-token cache of 10-token blocks, against tables of the expected
// state at chosen steps (the idea of TensorRT-LLM's capacitySchedulerTest), plus a run to
// completion that checks progress and that every block comes back.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/block_manager.h"
#include "engine/scheduler.h"
#include "util/error.h"

namespace mixserve {
namespace {

struct Row {
  int step;
  std::string chunks;     // "A95s B5" = A computes 95 tokens and samples, B computes 5
  std::string preempted;  // names, in order
  int free_blocks;        // after scheduling
  int running, waiting;
};

// Plays the engine: after each step, sampled sequences get one token; a sequence that has
// max_tokens outputs is finished and removed.
class Sim {
 public:
  Sim(const std::string& policy, bool prefix_caching, SchedulerLimits limits)
      : bm_(20, 10, prefix_caching), sched_(make_scheduler(policy, bm_, limits)) {}

  void add(const std::string& name, int32_t prompt_len, int32_t max_tokens) {
    auto s = std::make_unique<Sequence>();
    s->seq_id = int64_t(seqs_.size());
    for (int32_t i = 0; i < prompt_len; ++i) s->tokens.push_back(int32_t(name[0]) * 1000 + i);
    s->num_prompt_tokens = prompt_len;
    s->max_tokens = max_tokens;
    names_[s.get()] = name;
    sched_->add(s.get());
    seqs_.push_back(std::move(s));
  }

  Row step(int step_no) {
    ScheduleResult r = sched_->schedule();
    Row row{step_no, "", "", bm_.num_free_blocks(), sched_->num_running(), sched_->num_waiting()};
    for (const auto& c : r.chunks) {
      if (!row.chunks.empty()) row.chunks += " ";
      row.chunks += names_[c.seq] + std::to_string(c.num_tokens) + (c.sample ? "s" : "");
    }
    for (Sequence* p : r.preempted) row.preempted += names_[p];
    preemptions_ += int(r.preempted.size());
    sched_->on_computed(r);
    for (const auto& c : r.chunks) {
      if (!c.sample) continue;
      c.seq->tokens.push_back(7);
      if (c.seq->num_output_tokens() == c.seq->max_tokens) sched_->remove(c.seq);
    }
    return row;
  }

  // Runs until nothing is left; returns the rows of the steps asked for.
  std::map<int, Row> run(int max_steps) {
    std::map<int, Row> rows;
    int n = 0;
    while (sched_->has_work()) {
      ++n;
      EXPECT_LE(n, max_steps) << "no progress: the scheduler deadlocked";
      if (n > max_steps) break;
      rows[n] = step(n);
      EXPECT_FALSE(rows[n].chunks.empty()) << "step " << n << " scheduled nothing";
    }
    steps_ = n;
    return rows;
  }

  int steps() const { return steps_; }
  int preemptions() const { return preemptions_; }
  BlockManager& blocks() { return bm_; }

 private:
  BlockManager bm_;
  std::unique_ptr<Scheduler> sched_;
  std::vector<std::unique_ptr<Sequence>> seqs_;
  std::map<const Sequence*, std::string> names_;
  int preemptions_ = 0;
  int steps_ = 0;
};

void expect_rows(const std::map<int, Row>& got, const std::vector<Row>& want) {
  for (const Row& w : want) {
    auto it = got.find(w.step);
    ASSERT_NE(it, got.end()) << "step " << w.step << " never ran";
    const Row& g = it->second;
    EXPECT_EQ(g.chunks, w.chunks) << "step " << w.step;
    EXPECT_EQ(g.preempted, w.preempted) << "step " << w.step;
    EXPECT_EQ(g.free_blocks, w.free_blocks) << "step " << w.step;
    EXPECT_EQ(g.running, w.running) << "step " << w.step;
    EXPECT_EQ(g.waiting, w.waiting) << "step " << w.step;
  }
}

// A and B: 95-token prompts, 60 tokens each; both fit alone (155 tokens = 16 blocks), not
// together. Budget 100 tokens per step.
TEST(Scheduler, FcfsChunksAdmitsThenPreemptsTheNewest) {
  Sim sim("fcfs", /*prefix_caching=*/false, {8, 100});
  sim.add("A", 95, 60);
  sim.add("B", 95, 60);
  auto rows = sim.run(400);
  expect_rows(rows, {
      // A's whole prompt, and B's first chunk with what is left of the budget.
      {1, "A95s B5", "", 9, 2, 0},
      {2, "A1s B90s", "", 0, 2, 0},  // B's prefill completes: all 20 blocks in use
      {3, "A1s B1s", "", 0, 2, 0},
      {6, "A1s B1s", "", 0, 2, 0},   // A fills its 10th block (position 99)
      {7, "A1s", "B", 9, 1, 1},       // A needs an 11th block: B (newest) is preempted
      {8, "A1s", "", 9, 1, 1},       // B (100 tokens to recompute) does not fit next to A
      {60, "A1s", "", 4, 1, 1},      // A's 60th token: A finishes
      {61, "B100s", "", 10, 1, 0},   // B recomputes prompt + its 5 tokens in one chunk
  });
  EXPECT_EQ(sim.preemptions(), 1);
  EXPECT_EQ(sim.steps(), 61 + 54);  // B still needs 54 tokens after step 61's
  EXPECT_EQ(sim.blocks().num_free_blocks(), 20);
}

TEST(Scheduler, NoEvictAdmitsOnlyWhatItCanFinish) {
  Sim sim("no-evict", false, {8, 100});
  sim.add("A", 95, 60);
  sim.add("B", 95, 60);
  auto rows = sim.run(400);
  expect_rows(rows, {
      {1, "A95s", "", 10, 1, 1},  // B would need 16 blocks; A may still take 6 of the 10
      {2, "A1s", "", 10, 1, 1},
      {60, "A1s", "", 4, 1, 1},
      {61, "B95s", "", 10, 1, 0},
  });
  EXPECT_EQ(sim.preemptions(), 0);
  EXPECT_EQ(sim.steps(), 120);
  EXPECT_EQ(sim.blocks().num_free_blocks(), 20);
}

TEST(Scheduler, SequenceLimitAndTokenBudget) {
  Sim sim("fcfs", false, {/*max_num_seqs=*/2, /*max_num_batched_tokens=*/16});
  sim.add("A", 10, 2);
  sim.add("B", 10, 2);
  sim.add("C", 10, 2);
  auto rows = sim.run(50);
  expect_rows(rows, {
      {1, "A10s B6", "", 18, 2, 1},   // C waits: two sequences at most
      {2, "A1s B4s", "", 17, 2, 1},   // A crosses into its 2nd block, then finishes
      {3, "B1s C10s", "", 17, 2, 0},  // B finishes
      {4, "C1s", "", 18, 1, 0},
  });
  EXPECT_EQ(sim.blocks().num_free_blocks(), 20);
}

TEST(Scheduler, PrefixCachingLetsTheRecomputeReuseBlocks) {
  // Same scenario as the fcfs table, with prefix caching. B's 9 computed full blocks stay
  // cached when it is preempted; A's growth (5 more blocks) evicts B's tail blocks first, so
  // B comes back with its first 4 blocks cached and recomputes 60 tokens, not 100.
  Sim sim("fcfs", /*prefix_caching=*/true, {8, 100});
  sim.add("A", 95, 60);
  sim.add("B", 95, 60);
  auto rows = sim.run(400);
  ASSERT_TRUE(rows.count(61));
  EXPECT_EQ(rows[61].chunks, "B60s");
  EXPECT_EQ(sim.preemptions(), 1);
  EXPECT_EQ(sim.blocks().num_free_blocks(), 20);
}

TEST(Scheduler, ManySequencesTinyCacheNeverDeadlock) {
  for (const char* policy : {"fcfs", "no-evict"}) {
    for (int budget : {1, 7, 64}) {
      Sim sim(policy, true, {4, budget});
      for (int i = 0; i < 12; ++i)
        sim.add(std::string(1, char('a' + i)), 20 + (i * 37) % 80, 10 + (i * 13) % 80);  // <= 188 tokens
      sim.run(20000);
      EXPECT_EQ(sim.blocks().num_free_blocks(), 20) << policy << " budget " << budget;
    }
  }
}

TEST(Scheduler, UnknownPolicyIsAnError) {
  BlockManager bm(4, 4, true);
  EXPECT_THROW(make_scheduler("lifo", bm, {}), Error);
}

}  // namespace
}  // namespace mixserve
