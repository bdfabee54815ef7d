#include "bench/progress.h"

#include <unistd.h>

#include <cstdio>

namespace mixserve::bench {

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled && total > 0) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

ProgressBar::~ProgressBar() { finish(); }

std::string ProgressBar::render(const std::string& label, int64_t done, int64_t total,
                                double elapsed_s, int width) {
  const double frac = total > 0 ? double(done) / double(total) : 1.0;
  const int filled = int(frac * width + 1e-9);
  std::string bar = label.empty() ? "[" : label + " [";
  bar.append(size_t(filled), '#');
  bar.append(size_t(width - filled), '.');
  char tail[96];
  if (done > 0 && done < total) {
    const double eta = elapsed_s / double(done) * double(total - done);
    std::snprintf(tail, sizeof tail, "] %lld/%lld  %.1fs  eta %.1fs", (long long)done,
                  (long long)total, elapsed_s, eta);
  } else {
    std::snprintf(tail, sizeof tail, "] %lld/%lld  %.1fs", (long long)done, (long long)total,
                  elapsed_s);
  }
  return bar + tail;
}

void ProgressBar::draw() {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  // \r and clear-to-end-of-line: redraw in place.
  std::fprintf(stderr, "\r%s\x1b[K", render(label_, done_, total_, elapsed, 30).c_str());
  std::fflush(stderr);
  last_draw_ = now;
}

void ProgressBar::update(int64_t done) {
  if (!enabled_ || finished_) return;
  done_ = done;
  if (std::chrono::steady_clock::now() - last_draw_ >= std::chrono::milliseconds(100)) draw();
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw();
  std::fputc('\n', stderr);
}

}  // namespace mixserve::bench
