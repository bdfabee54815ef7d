// A one-line progress bar on stderr with elapsed time and an estimate of the time left. Drawn
// only when stderr is a terminal (so logs and CI output stay clean), at most 10 times a second.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mixserve::bench {

class ProgressBar {
 public:
  // enabled: usually stderr_is_terminal(); a disabled bar does nothing.
  ProgressBar(std::string label, int64_t total, bool enabled);
  ~ProgressBar();  // finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(int64_t done);  // cheap when called often
  void finish();              // draws the final state and ends the line

  // The line as drawn, e.g. "OFF-128 b=64 [#######.....]  560/1000  12.5s  eta 9.8s".
  static std::string render(const std::string& label, int64_t done, int64_t total,
                            double elapsed_s, int width);

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool finished_ = false;
  int64_t done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  void draw();
};

bool stderr_is_terminal();

}  // namespace mixserve::bench
