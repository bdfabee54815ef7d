// `mixserve info`: version and the devices this build can use.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "backend/device.h"
#include "cli/command.h"

namespace mixserve::cli {
namespace {

const CommandRegistrar kInfo("info", "Print the version and the devices this build can use",
                             [](CLI::App& sub) -> std::function<int()> {
                               return [] {
                                 std::printf("mixserve %s\n", MIXSERVE_VERSION);
                                 std::printf("cuda backend: %s\n", cuda_build_enabled() ? "built" : "not built");
                                 std::printf("cuda devices: %d\n", cuda_device_count());
                                 return 0;
                               };
                             });

}  // namespace
}  // namespace mixserve::cli
