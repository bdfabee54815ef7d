// Communicator: collectives among the ranks that together hold one copy of the model
// (tensor / expert parallelism), on host memory. Every rank calls the same collectives in the
// same order; a call returns when this rank's part is done.
//
// Implementations: a group of threads in one process (make_thread_group, for CPU ranks and
// tests) and TCP sockets between processes (connect_tcp, for mpirun / --nnodes launches).
// Device tensors go through NCCL (backend/cuda/nccl_communicator.h), which is bootstrapped
// over one of these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mixserve::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[0..n) := the element-wise sum over ranks, on every rank. The order of the additions
  // is the same on every rank (rank 0 + rank 1 + ...), so all ranks get identical bits.
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  // bytes on `root` are copied to every other rank (resized there).
  virtual void broadcast(std::vector<uint8_t>* bytes, int root) = 0;
  virtual void barrier() = 0;
};

// size communicators, one per rank, for threads of this process (rank r uses element r).
// Collectives block until all size threads have called them.
std::vector<std::unique_ptr<Communicator>> make_thread_group(int size);

// Where a process finds its peers: world size, its rank, and rank 0's address.
struct Rendezvous {
  int world_size = 1;
  int rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double timeout_s = 300.0;  // connect / accept give up after this long, naming the peer
  // A collective (TCP) that has not completed after this long throws; 0 waits forever (the
  // default: ranks of an idle server wait in a collective for the next step). A peer that
  // dies closes its sockets, which the others see at once either way.
  double collective_timeout_s = 0.0;
};

// Connects this process to the others of the rendezvous over TCP (rank 0 listens on
// master_addr:master_port). Throws mixserve::Error on timeout or a peer that disagrees on the
// world size.
std::unique_ptr<Communicator> connect_tcp(const Rendezvous& rv);

}  // namespace mixserve::dist
