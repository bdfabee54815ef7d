// Errors: one exception type that carries context, thrown at module boundaries.
//
// Inside hot loops and kernels we return status; everything that faces a user (a checkpoint,
// a request, a flag) ends as a mixserve::Error whose message says what was wrong and what to
// do, e.g. "config.json: num_local_experts missing (is this a Mixtral checkpoint?)".
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mixserve {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Builds a message from any streamable pieces: throw_error("file ", path, ": bad header").
template <typename... Parts>
[[noreturn]] void throw_error(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw Error(os.str());
}

// Check a condition that depends on input (not a programming error).
#define MIXSERVE_CHECK(cond, ...)                     \
  do {                                                \
    if (!(cond)) ::mixserve::throw_error(__VA_ARGS__); \
  } while (0)

}  // namespace mixserve
