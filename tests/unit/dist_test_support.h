// Helpers of the communicator tests: run one function per rank on threads, and inputs that any
// rank can recompute (a hash of seed, call, rank and index), so each rank checks the exact sum.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace mixserve::dist_test {

// A seed that differs from run to run (printed by the tests that use it, to reproduce).
inline uint64_t fresh_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Rank `rank`'s input element i of call `call`: a float in [-8, 8) with a full mantissa, so
// that the order of additions shows in the bits of the sum.
inline float input_value(uint64_t seed, uint64_t call, int rank, size_t i) {
  const uint64_t h = splitmix64(seed ^ splitmix64(call * 1315423911ull + rank) ^ (i << 20) ^ i);
  return static_cast<float>(static_cast<int64_t>(h >> 11) - (int64_t{1} << 52)) * 0x1p-49f;
}

inline std::vector<float> inputs(uint64_t seed, uint64_t call, int rank, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = input_value(seed, call, rank, i);
  return v;
}

// The sum over ranks in rank order (0 + 1 + ... + size-1), as every communicator promises.
inline std::vector<float> expected_sum(uint64_t seed, uint64_t call, int size, size_t n) {
  std::vector<float> out = inputs(seed, call, 0, n);
  for (int r = 1; r < size; ++r) {
    for (size_t i = 0; i < n; ++i) out[i] += input_value(seed, call, r, i);
  }
  return out;
}

// A local port nobody listens on right now: bind port 0, read what the kernel chose, release
// it (another process could take it before the test does; unlikely within milliseconds).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (fd >= 0) ::close(fd);
  return ok ? ntohs(addr.sin_port) : 29500;
}

// Runs fn(rank) on `size` threads and returns what each threw ("" where nothing).
inline std::vector<std::string> run_ranks(int size, const std::function<void(int)>& fn) {
  std::vector<std::string> errors(static_cast<size_t>(size));
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
        if (errors[r].empty()) errors[r] = "(empty message)";
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace mixserve::dist_test
