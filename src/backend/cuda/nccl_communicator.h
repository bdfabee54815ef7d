// All-reduce of device tensors among the ranks of a tensor / expert parallel group.
//
// Two implementations behind one interface:
//   make_nccl_communicator: NCCL, one GPU per rank, asynchronous on the caller's stream and
//     safe inside CUDA graph capture. libnccl.so.2 is loaded at run time (dlopen), so the binary
//     runs without NCCL until a multi-GPU run asks for it.
//   make_staged_communicator: device -> host copy, the host communicator's float32 all-reduce,
//     host -> device copy, synchronous. For several ranks on one GPU (tests) and where NCCL is
//     missing; not capturable.
// Light on purpose: no cuda_runtime.h or nccl.h here (cudaStream_t is CUstream_st*).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "model/dtype.h"

struct CUstream_st;

namespace mixserve::cuda {

class DeviceCommunicator {
 public:
  virtual ~DeviceCommunicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data[0..n) (elements of dtype kF32, kBF16 or kF16, on this rank's device) := the
  // element-wise sum over ranks, on every rank, ordered on `stream`. Every rank calls it with
  // the same n and dtype in the same order.
  virtual void all_reduce_sum(void* data, size_t n, DType dtype, CUstream_st* stream) = 0;
  // Whether all_reduce_sum may be recorded into a CUDA graph.
  virtual bool capturable() const = 0;
};

// NCCL over the ranks of `host` (one call per rank, on the rank's thread; rank 0's NCCL id
// travels through host.broadcast). Makes cuda_device current on the calling thread. Sets
// NCCL_NVLS_ENABLE=0 when unset (NVLink multicast stays off). Throws mixserve::Error when
// libnccl.so.2 cannot be loaded (naming LD_LIBRARY_PATH) or NCCL fails (naming the call).
std::unique_ptr<DeviceCommunicator> make_nccl_communicator(dist::Communicator& host,
                                                           int cuda_device);

// Staged through host memory over `host`, which must outlive the result. Sums in float32 in
// rank order (bf16 / fp16 are widened, summed, rounded once), so every rank gets the same bits.
std::unique_ptr<DeviceCommunicator> make_staged_communicator(dist::Communicator& host);

// Whether libnccl.so.2 loads in this process; otherwise *why (if given) says what dlopen said.
bool nccl_available(std::string* why = nullptr);

// NCCL's version as major * 10000 + minor * 100 + patch (e.g. 22805); throws like
// make_nccl_communicator when NCCL cannot be loaded.
int nccl_version();

}  // namespace mixserve::cuda
