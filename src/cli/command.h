// Sub-commands of the mixserve binary register themselves here: one file per command
// (cmd_generate.cpp, cmd_make_model.cpp, ...), each defining a static CommandRegistrar.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace mixserve::cli {

// setup() adds the sub-command's options to `sub`; it returns the function run when the
// sub-command is chosen (its return value is the process exit code).
using CommandSetup = std::function<std::function<int()>(CLI::App& sub)>;

// A name with a space ("bench offline") makes a sub-command of the group named first.
struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string description, CommandSetup setup);
};

}  // namespace mixserve::cli
