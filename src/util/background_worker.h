// One persistent thread that runs one job at a time beside its owner: run() hands it a job
// (after waiting for the one before), wait() blocks until the current job is done and rethrows
// what it threw. The engine uses it to turn a step's tokens into text and stream events while
// it schedules and runs the next step.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace mixserve {

class BackgroundWorker {
 public:
  BackgroundWorker();
  ~BackgroundWorker();  // waits for the current job (its exception is dropped), joins
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;

  void run(std::function<void()> job);  // wait(), then start job
  void wait();                          // no-op when idle; rethrows the job's exception once

 private:
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace mixserve
