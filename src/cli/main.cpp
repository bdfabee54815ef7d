// mixserve: serve|generate|tokenize|bench|make-model|quantize. Each lives in its own cmd_*.cpp.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <vector>

#include "cli/command.h"
#include "util/error.h"

namespace mixserve::cli {
namespace {

struct Entry {
  std::string name, description;
  CommandSetup setup;
};

std::vector<Entry>& registry() {
  static std::vector<Entry> entries;
  return entries;
}

}  // namespace

CommandRegistrar::CommandRegistrar(std::string name, std::string description, CommandSetup setup) {
  registry().push_back({std::move(name), std::move(description), std::move(setup)});
}

}  // namespace mixserve::cli

int main(int argc, char** argv) {
  using namespace mixserve::cli;
  CLI::App app{"mixserve: an inference engine and server for Mixtral-family MoE models"};
  app.set_version_flag("--version", std::string(MIXSERVE_VERSION));
  app.require_subcommand(1);
  std::map<CLI::App*, std::function<int()>> runners;
  // "bench offline" is sub-command "offline" of a group "bench" made on first use.
  std::map<std::string, CLI::App*> groups;
  for (Entry& e : registry()) {
    CLI::App* parent = &app;
    std::string leaf = e.name;
    if (const size_t space = e.name.find(' '); space != std::string::npos) {
      const std::string group = e.name.substr(0, space);
      leaf = e.name.substr(space + 1);
      CLI::App*& g = groups[group];
      if (g == nullptr) {
        g = app.add_subcommand(group, "Benchmarks and measurements");
        g->require_subcommand(1);
      }
      parent = g;
    }
    CLI::App* sub = parent->add_subcommand(leaf, e.description);
    runners[sub] = e.setup(*sub);
  }
  // CLI11 takes one-letter short names only; "-tp" (vLLM's spelling) is --tensor-parallel.
  static char kTensorParallel[] = "--tensor-parallel";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-tp") == 0) argv[i] = kTensorParallel;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const mixserve::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 1;
}
