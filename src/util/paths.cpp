#include "util/paths.h"

#include <cstdlib>
#include <unistd.h>

#include "util/error.h"

namespace mixserve {

std::filesystem::path assets_dir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("MIXSERVE_ASSETS")) {
    if (fs::is_directory(env)) return env;
    throw_error("MIXSERVE_ASSETS=", env, " is not a directory");
  }
  // Beside the binary (an installed or carried copy: bin/mixserve + bin/assets).
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) {
    buf[n] = '\0';
    const fs::path exe_dir = fs::path(buf).parent_path();
    for (const fs::path& p : {exe_dir / "assets", exe_dir.parent_path() / "assets"}) {
      if (fs::is_directory(p / "tokenizer")) return p;
    }
  }
  const fs::path src = fs::path(MIXSERVE_SOURCE_DIR) / "assets";
  if (fs::is_directory(src)) return src;
  throw_error("cannot find mixserve's assets folder; set MIXSERVE_ASSETS to <repo>/assets");
}

}  // namespace mixserve
