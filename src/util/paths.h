// Where mixserve finds the files it ships (tokenizer assets): next to the binary's source
// tree, or wherever MIXSERVE_ASSETS points.
#pragma once

#include <filesystem>

namespace mixserve {

// The folder holding assets/ (tokenizer/mixtral/...). Throws if none is found.
std::filesystem::path assets_dir();

}  // namespace mixserve
