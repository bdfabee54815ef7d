// resolve_launch: flags first, then mpirun's and torchrun's variables, then one process.
#include "dist/launch.h"

#include <charconv>
#include <exception>
#include <optional>
#include <thread>

#include "util/error.h"

extern char** environ;

namespace mixserve::dist {
namespace {

constexpr const char* kDefaultMasterAddr = "127.0.0.1";
constexpr int kDefaultMasterPort = 29500;

std::optional<std::string> lookup(const EnvMap& env, const std::string& name) {
  const auto it = env.find(name);
  if (it == env.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

// A whole non-negative decimal number, or an error naming the variable.
int parse_count(const std::string& name, const std::string& text) {
  int value = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    throw_error("environment variable ", name, "=\"", text,
                "\" is not a non-negative whole number");
  }
  return value;
}

std::optional<int> env_int(const EnvMap& env, const std::string& name) {
  const auto text = lookup(env, name);
  if (!text) return std::nullopt;
  return parse_count(name, *text);
}

struct Placement {
  int processes = 1, index = 0, local_index = 0;  // local_index: among this host's processes
  std::string source = "single process";
};

// A launcher's (size, rank, local rank) variables, if its size variable is set.
std::optional<Placement> from_launcher(const EnvMap& env, const char* size_var,
                                       const char* rank_var, const char* local_var,
                                       const char* source) {
  const auto size = env_int(env, size_var);
  if (!size) return std::nullopt;
  const auto rank = env_int(env, rank_var);
  MIXSERVE_CHECK(rank.has_value(), size_var, " is set but ", rank_var,
                 " is not (was this process started by ", source, "?)");
  MIXSERVE_CHECK(*size >= 1, size_var, "=", *size, " must be at least 1");
  MIXSERVE_CHECK(*rank < *size, rank_var, "=", *rank, " must be below ", size_var, "=", *size);
  Placement p;
  p.processes = *size;
  p.index = *rank;
  p.local_index = env_int(env, local_var).value_or(0);
  p.source = source;
  return p;
}

}  // namespace

EnvMap current_env() {
  EnvMap env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return env;
}

LaunchInfo resolve_launch(const LaunchFlags& flags, const EnvMap& env) {
  const int n = flags.tensor_parallel;
  MIXSERVE_CHECK(n >= 1, "--tensor-parallel ", n, " must be at least 1");
  MIXSERVE_CHECK(flags.timeout_s > 0, "rendezvous timeout ", flags.timeout_s,
                 " s must be positive");
  // Open MPI, else MPICH / Hydra (PMI_SIZE / PMI_RANK, MPI_LOCALRANKID).
  auto mpi = from_launcher(env, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                           "OMPI_COMM_WORLD_LOCAL_RANK", "mpirun");
  if (!mpi) mpi = from_launcher(env, "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID", "mpirun (PMI)");
  Placement place;
  if (flags.nnodes > 0) {
    MIXSERVE_CHECK(!mpi || mpi->processes == flags.nnodes, "--nnodes ", flags.nnodes,
                   " disagrees with mpirun's OMPI_COMM_WORLD_SIZE=", mpi ? mpi->processes : 0,
                   " (under mpirun, leave out --nnodes and --node-rank)");
    MIXSERVE_CHECK(!mpi || flags.node_rank < 0,
                   "--node-rank is given but mpirun numbers the processes itself "
                   "(OMPI_COMM_WORLD_RANK); leave out --node-rank");
    MIXSERVE_CHECK(flags.node_rank >= 0 || flags.nnodes == 1 || mpi, "--nnodes ", flags.nnodes,
                   " needs --node-rank (0 on the node of rank 0, then 1, 2, ...)");
    if (mpi) {
      place = *mpi;
    } else {
      place.processes = flags.nnodes;
      place.index = flags.node_rank < 0 ? 0 : flags.node_rank;
      place.source = "--nnodes";
    }
    MIXSERVE_CHECK(place.index < place.processes, "--node-rank ", place.index,
                   " must be below --nnodes ", place.processes);
  } else {
    MIXSERVE_CHECK(flags.node_rank < 0, "--node-rank ", flags.node_rank,
                   " needs --nnodes (the number of nodes)");
    if (mpi) {
      place = *mpi;
    } else if (auto torch = from_launcher(env, "WORLD_SIZE", "RANK", "LOCAL_RANK", "torchrun")) {
      place = *torch;
    }
  }
  MIXSERVE_CHECK(n % place.processes == 0, "--tensor-parallel ", n,
                 " ranks cannot be split "
                 "evenly over ",
                 place.processes, " processes (from ", place.source, "): use a multiple of ",
                 place.processes, " ranks or fewer processes");

  LaunchInfo info;
  info.world_size = n;
  info.num_processes = place.processes;
  info.process_index = place.index;
  info.local_ranks = n / place.processes;
  info.rank_base = place.index * info.local_ranks;
  info.first_device = place.local_index * info.local_ranks;
  info.multi_process = place.processes > 1;
  info.source = place.source;
  info.rv.world_size = n;
  info.rv.rank = info.rank_base;
  info.rv.timeout_s = flags.timeout_s;
  info.rv.master_addr = !flags.master_addr.empty()
                            ? flags.master_addr
                            : lookup(env, "MASTER_ADDR").value_or(kDefaultMasterAddr);
  if (flags.master_port != 0) {
    info.rv.master_port = flags.master_port;
  } else {
    info.rv.master_port = env_int(env, "MASTER_PORT").value_or(kDefaultMasterPort);
  }
  MIXSERVE_CHECK(info.rv.master_port > 0 && info.rv.master_port < 65536, "master port ",
                 info.rv.master_port, " outside [1, 65535] (--master-port / MASTER_PORT)");
  return info;
}

Rendezvous LaunchInfo::rendezvous_for(int local_index) const {
  MIXSERVE_CHECK(local_index >= 0 && local_index < local_ranks, "local rank ", local_index,
                 " outside [0, ", local_ranks, ")");
  Rendezvous out = rv;
  out.rank = rank_base + local_index;
  return out;
}

std::string LaunchInfo::describe() const {
  std::string ranks = local_ranks == 1 ? "rank " + std::to_string(rank_base)
                                       : "ranks " + std::to_string(rank_base) + "-" +
                                             std::to_string(rank_base + local_ranks - 1);
  std::string out = ranks + " of " + std::to_string(world_size);
  if (!multi_process) return out + " as threads of this process";
  return out + " in process " + std::to_string(process_index) + " of " +
         std::to_string(num_processes) + " (" + source + "), rank 0 at " + rv.master_addr + ":" +
         std::to_string(rv.master_port);
}

std::vector<std::unique_ptr<Communicator>> connect_local_ranks(const LaunchInfo& info) {
  if (!info.multi_process) return make_thread_group(info.world_size);
  std::vector<std::unique_ptr<Communicator>> comms(static_cast<size_t>(info.local_ranks));
  std::vector<std::exception_ptr> errors(comms.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < info.local_ranks; ++t) {
    threads.emplace_back([&, t] {
      try {
        comms[t] = connect_tcp(info.rendezvous_for(t));
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  return comms;
}

}  // namespace mixserve::dist
