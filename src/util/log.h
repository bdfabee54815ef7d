// Minimal leveled logging to stderr; thread-safe, one line per call.
#pragma once

#include <sstream>
#include <string>

namespace mixserve::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);
Level level();
void write(Level level, const std::string& message);

template <typename... Parts>
void emit(Level lvl, Parts&&... parts) {
  if (lvl < level()) return;
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  write(lvl, os.str());
}

template <typename... Parts> void debug(Parts&&... p) { emit(Level::kDebug, std::forward<Parts>(p)...); }
template <typename... Parts> void info(Parts&&... p) { emit(Level::kInfo, std::forward<Parts>(p)...); }
template <typename... Parts> void warn(Parts&&... p) { emit(Level::kWarn, std::forward<Parts>(p)...); }
template <typename... Parts> void error(Parts&&... p) { emit(Level::kError, std::forward<Parts>(p)...); }

}  // namespace mixserve::log
