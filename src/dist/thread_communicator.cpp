// make_thread_group: the ranks are threads of one process sharing a Group.
//
// Collectives are built on one reusable barrier. all_reduce_sum: every rank publishes its
// pointer, a barrier, then rank r sums the slice [r*n/P, (r+1)*n/P) of all P buffers in rank
// order (p0 + p1 + ... + p{P-1}, so every rank gets the same bits) and writes the sum into all
// P buffers, then a second barrier keeps every pointer alive until all slices are written.
// No rank touches another's slice, so no scratch buffer and no copy back are needed.
//
// Arguments are checked after the first barrier, by every rank on every rank's arguments, so a
// mismatch (different n, different root) makes all ranks throw the same error instead of
// leaving some of them waiting forever.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "dist/communicator.h"
#include "util/error.h"

namespace mixserve::dist {
namespace {

// Spin briefly before sleeping: in a forward pass the ranks arrive within microseconds of each
// other, and a futex sleep/wake costs more than that. With more threads than cores the spin
// ends quickly and the waiter sleeps.
constexpr int kSpinIterations = 256;
// Then yield for a while: with more ranks than free cores (tests, CPU ranks on a busy host) the
// rank we wait for gets the core at once instead of after a sleep/wake round trip.
constexpr int kYieldIterations = 256;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// A reusable barrier for `size` threads, which can be broken (a rank's communicator destroyed
// while others may wait): waiters then throw instead of hanging. state = (generation << 1) |
// broken; the last arrival of a generation adds 2.
class Barrier {
 public:
  explicit Barrier(int size) : size_(size) {}

  void arrive_and_wait(int rank) {
    const uint64_t start = state_.load(std::memory_order_acquire);
    if (start & 1) throw_broken(rank);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == size_) {
      arrived_.store(0, std::memory_order_relaxed);
      state_.fetch_add(2, std::memory_order_acq_rel);  // releases the reset above too
      state_.notify_all();
      return;
    }
    for (int i = 0;; ++i) {
      const uint64_t now = state_.load(std::memory_order_acquire);
      if ((now >> 1) != (start >> 1)) return;  // this generation completed
      if (now & 1) throw_broken(rank);
      if (i < kSpinIterations) {
        cpu_relax();
      } else if (i < kSpinIterations + kYieldIterations) {
        std::this_thread::yield();
      } else {
        state_.wait(now, std::memory_order_acquire);
      }
    }
  }

  void break_group() {
    state_.fetch_or(1, std::memory_order_acq_rel);
    state_.notify_all();
  }

 private:
  [[noreturn]] static void throw_broken(int rank) {
    throw_error("thread communicator (rank ", rank,
                "): another rank of the group was destroyed while this one waited in a "
                "collective (did a rank thread fail?)");
  }

  const int size_;
  std::atomic<int> arrived_{0};
  std::atomic<uint64_t> state_{0};
};

// What each rank publishes for the current collective.
struct Slot {
  float* data = nullptr;
  size_t n = 0;
  std::vector<uint8_t>* bytes = nullptr;
  int root = 0;
};

struct Group {
  explicit Group(int size) : barrier(size), slots(static_cast<size_t>(size)) {}
  Barrier barrier;
  std::vector<Slot> slots;  // [rank]; written by its rank before the first barrier of a call
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Group> group, int rank)
      : group_(std::move(group)), rank_(rank) {}
  ~ThreadCommunicator() override { group_->barrier.break_group(); }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(group_->slots.size()); }

  void all_reduce_sum(float* data, size_t n) override {
    const int p = size();
    if (p == 1) return;
    auto& slots = group_->slots;
    slots[rank_].data = data;
    slots[rank_].n = n;
    group_->barrier.arrive_and_wait(rank_);
    for (int r = 1; r < p; ++r) {
      if (slots[r].n != slots[0].n) {
        throw_error("thread communicator all_reduce_sum: rank 0 passed ", slots[0].n,
                    " elements but rank ", r, " passed ", slots[r].n,
                    " (every rank must reduce the same count)");
      }
    }
    // Rank r's slice; sums in rank order, element by element.
    const size_t begin = n * static_cast<size_t>(rank_) / static_cast<size_t>(p);
    const size_t end = n * static_cast<size_t>(rank_ + 1) / static_cast<size_t>(p);
    constexpr size_t kChunk = 1024;  // keeps the partial sums in L1 while ranks are added
    float acc[kChunk];
    for (size_t c = begin; c < end; c += kChunk) {
      const size_t len = std::min(kChunk, end - c);
      std::memcpy(acc, slots[0].data + c, len * sizeof(float));
      for (int r = 1; r < p; ++r) {
        const float* src = slots[r].data + c;
        for (size_t i = 0; i < len; ++i) acc[i] += src[i];
      }
      for (int r = 0; r < p; ++r) std::memcpy(slots[r].data + c, acc, len * sizeof(float));
    }
    group_->barrier.arrive_and_wait(rank_);
  }

  void broadcast(std::vector<uint8_t>* bytes, int root) override {
    const int p = size();
    auto& slots = group_->slots;
    slots[rank_].bytes = bytes;
    slots[rank_].root = root;
    if (p == 1) {
      MIXSERVE_CHECK(root == 0, "thread communicator broadcast: root ", root, " outside [0, 1)");
      return;
    }
    group_->barrier.arrive_and_wait(rank_);
    for (int r = 0; r < p; ++r) {
      if (slots[r].root != slots[0].root) {
        throw_error("thread communicator broadcast: rank 0 named root ", slots[0].root,
                    " but rank ", r, " named root ", slots[r].root);
      }
    }
    if (root < 0 || root >= p) {
      throw_error("thread communicator broadcast: root ", root, " outside [0, ", p, ")");
    }
    if (rank_ != root) *bytes = *slots[root].bytes;
    group_->barrier.arrive_and_wait(rank_);  // the root's vector stays put until all copied
  }

  void barrier() override {
    if (size() > 1) group_->barrier.arrive_and_wait(rank_);
  }

 private:
  std::shared_ptr<Group> group_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_thread_group(int size) {
  MIXSERVE_CHECK(size >= 1, "make_thread_group: size ", size, " must be at least 1");
  auto group = std::make_shared<Group>(size);
  std::vector<std::unique_ptr<Communicator>> out;
  out.reserve(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) out.push_back(std::make_unique<ThreadCommunicator>(group, r));
  return out;
}

}  // namespace mixserve::dist
