// BackgroundWorker (util/background_worker.h): jobs run one at a time, off the caller's
// thread, in order; wait() rethrows a job's exception once; destruction waits for a job.
#include "util/background_worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace mixserve {
namespace {

TEST(BackgroundWorker, RunsJobsInOrderOffTheCallersThread) {
  BackgroundWorker w;
  std::vector<int> order;
  std::thread::id ran_on;
  for (int i = 0; i < 50; ++i) {
    w.run([&, i] {
      order.push_back(i);  // safe: run() waits for the job before
      ran_on = std::this_thread::get_id();
    });
  }
  w.wait();
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[size_t(i)], i);
  EXPECT_NE(ran_on, std::this_thread::get_id());
  w.wait();  // idle: returns at once
}

TEST(BackgroundWorker, RunsBesideTheCaller) {
  BackgroundWorker w;
  std::atomic<bool> release{false}, started{false};
  w.run([&] {
    started = true;
    while (!release) std::this_thread::yield();
  });
  while (!started) std::this_thread::yield();  // the job runs while run() has returned
  release = true;
  w.wait();
}

TEST(BackgroundWorker, WaitRethrowsOnceAndTheWorkerGoesOn) {
  BackgroundWorker w;
  w.run([] { throw std::runtime_error("text failed"); });
  EXPECT_THROW(w.wait(), std::runtime_error);
  w.wait();  // the error was reported once
  int ran = 0;
  w.run([&] { ran = 1; });
  w.wait();
  EXPECT_EQ(ran, 1);
}

TEST(BackgroundWorker, DestructionWaitsForTheJob) {
  std::atomic<bool> done{false};
  {
    BackgroundWorker w;
    w.run([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      done = true;
    });
  }
  EXPECT_TRUE(done);
}

}  // namespace
}  // namespace mixserve
