// Makes the backend a command asked for: --device cpu|cuda|auto over a model folder or a
// synthetic:PRESET name.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace mixserve {

struct BackendOptions {
  std::string model;           // a checkpoint folder, or "synthetic:PRESET[?layers=N]"
  std::string device = "auto"; // cpu | cuda | auto (cuda when a GPU is present)
  int num_threads = 0;         // CPU: 0 = all cores
};

std::unique_ptr<Backend> create_backend(const BackendOptions& options);

}  // namespace mixserve
