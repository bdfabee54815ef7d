// NCCL through dlopen, and the host-staged fallback.
//
// NCCL is not linked: the library is ~200 MB and absent on many machines. The functions we use
// are looked up once per process; their signatures come from nccl.h (types only).
#include "backend/cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "util/error.h"

namespace mixserve::cuda {
namespace {

constexpr const char* kNcclLibrary = "libnccl.so.2";

struct NcclApi {
  decltype(&ncclGetVersion) get_version = nullptr;
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclGetErrorString) get_error_string = nullptr;
  std::string load_error;  // empty once every symbol resolved
};

const NcclApi& nccl_api() {
  static const NcclApi api = [] {
    NcclApi a;
    void* lib = ::dlopen(kNcclLibrary, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = ::dlerror();
      a.load_error = std::string("cannot load ") + kNcclLibrary + ": " +
                     (why ? why : "unknown dlopen error") +
                     " (install NCCL, or add the folder that holds it to LD_LIBRARY_PATH, "
                     "e.g. /usr/local/cuda/lib64 or a pip nvidia-nccl-cu12's nvidia/nccl/lib)";
      return a;
    }
    // Never dlclose: NCCL keeps threads and the process may still use communicators at exit.
    auto resolve = [&](auto* slot, const char* name) {
      void* sym = ::dlsym(lib, name);
      if (sym == nullptr && a.load_error.empty()) {
        a.load_error = std::string(kNcclLibrary) + " lacks the function " + name +
                       " (too old an NCCL? mixserve needs NCCL 2.x with bf16, 2.10 or newer)";
      }
      *slot = reinterpret_cast<std::remove_pointer_t<decltype(slot)>>(sym);
    };
    resolve(&a.get_version, "ncclGetVersion");
    resolve(&a.get_unique_id, "ncclGetUniqueId");
    resolve(&a.comm_init_rank, "ncclCommInitRank");
    resolve(&a.all_reduce, "ncclAllReduce");
    resolve(&a.comm_destroy, "ncclCommDestroy");
    resolve(&a.get_error_string, "ncclGetErrorString");
    return a;
  }();
  return api;
}

const NcclApi& loaded_nccl_api() {
  const NcclApi& api = nccl_api();
  if (!api.load_error.empty()) throw_error("NCCL: ", api.load_error);
  return api;
}

void check_nccl(const NcclApi& api, ncclResult_t result, const char* call, int rank) {
  if (result == ncclSuccess) return;
  throw_error("NCCL (rank ", rank, "): ", call, " failed: ", api.get_error_string(result),
              " (set NCCL_DEBUG=WARN for NCCL's own account)");
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return ncclFloat32;
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    default:
      break;
  }
  throw_error("device all_reduce_sum: dtype ", dtype_name(dtype),
              " is not supported (F32, BF16 or F16)");
}

class NcclCommunicator : public DeviceCommunicator {
 public:
  NcclCommunicator(const NcclApi& api, ncclComm_t comm, int rank, int size)
      : api_(api), comm_(comm), rank_(rank), size_(size) {}
  ~NcclCommunicator() override { api_.comm_destroy(comm_); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool capturable() const override { return true; }

  void all_reduce_sum(void* data, size_t n, DType dtype, CUstream_st* stream) override {
    const ncclDataType_t type = nccl_type(dtype);
    if (n == 0) return;
    check_nccl(api_, api_.all_reduce(data, data, n, type, ncclSum, comm_, stream), "ncclAllReduce",
               rank_);
  }

 private:
  const NcclApi& api_;
  ncclComm_t comm_;
  const int rank_, size_;
};

class StagedCommunicator : public DeviceCommunicator {
 public:
  explicit StagedCommunicator(dist::Communicator& host) : host_(host) {}

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  bool capturable() const override { return false; }

  // [n] device data -> pinned host bytes -> float32 sums over ranks -> back, in place.
  void all_reduce_sum(void* data, size_t n, DType dtype, CUstream_st* stream) override {
    nccl_type(dtype);  // the same dtype check as NCCL's
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    MIXSERVE_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
    MIXSERVE_CHECK(capture == cudaStreamCaptureStatusNone, "staged device communicator (rank ",
                   rank(),
                   "): cannot run inside CUDA "
                   "graph capture (it waits on the host); capture only with NCCL");
    const size_t bytes = n * dtype_size(dtype);
    if (staging_.bytes() < bytes) staging_.reset(bytes);
    sums_.resize(n);
    if (n > 0) {
      MIXSERVE_CUDA_CHECK(
          cudaMemcpyAsync(staging_.get(), data, bytes, cudaMemcpyDeviceToHost, stream));
      MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    widen(dtype, n);
    host_.all_reduce_sum(sums_.data(), n);
    if (n == 0) return;
    narrow(dtype, n);
    MIXSERVE_CUDA_CHECK(
        cudaMemcpyAsync(data, staging_.get(), bytes, cudaMemcpyHostToDevice, stream));
    // The pinned buffer is reused by the next call: the copy must be done before we return.
    MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

 private:
  void widen(DType dtype, size_t n) {
    const void* src = staging_.get();
    if (dtype == DType::kF32) {
      std::memcpy(sums_.data(), src, n * sizeof(float));
      return;
    }
    const auto* half = static_cast<const uint16_t*>(src);
    for (size_t i = 0; i < n; ++i) {
      sums_[i] = dtype == DType::kBF16 ? bf16_to_float(half[i]) : fp16_to_float(half[i]);
    }
  }

  void narrow(DType dtype, size_t n) {
    void* dst = staging_.get();
    if (dtype == DType::kF32) {
      std::memcpy(dst, sums_.data(), n * sizeof(float));
      return;
    }
    auto* half = static_cast<uint16_t*>(dst);
    for (size_t i = 0; i < n; ++i) {
      half[i] = dtype == DType::kBF16 ? float_to_bf16(sums_[i]) : float_to_fp16(sums_[i]);
    }
  }

  dist::Communicator& host_;
  PinnedBuffer staging_;     // [n * dtype_size] the device data, then the result
  std::vector<float> sums_;  // [n] widened values, summed over ranks
};

}  // namespace

bool nccl_available(std::string* why) {
  const NcclApi& api = nccl_api();
  if (why != nullptr) *why = api.load_error;
  return api.load_error.empty();
}

int nccl_version() {
  const NcclApi& api = loaded_nccl_api();
  int version = 0;
  check_nccl(api, api.get_version(&version), "ncclGetVersion", 0);
  return version;
}

std::unique_ptr<DeviceCommunicator> make_nccl_communicator(dist::Communicator& host,
                                                           int cuda_device) {
  const NcclApi& api = loaded_nccl_api();
  int devices = 0;
  MIXSERVE_CUDA_CHECK(cudaGetDeviceCount(&devices));
  MIXSERVE_CHECK(cuda_device >= 0 && cuda_device < devices, "NCCL (rank ", host.rank(),
                 "): CUDA device ", cuda_device, " does not exist (this machine has ", devices,
                 "; check CUDA_VISIBLE_DEVICES)");
  // NVLink SHARP / multicast stays off unless the user chose otherwise: some hosts forbid it,
  // and an all-reduce of a few MB gains little from it. Once per process, before any rank's
  // NCCL init reads the environment (setenv races with getenv on other threads).
  static std::once_flag env_once;
  std::call_once(env_once, [] { ::setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0); });
  MIXSERVE_CUDA_CHECK(cudaSetDevice(cuda_device));

  ncclUniqueId id;
  std::vector<uint8_t> id_bytes;
  if (host.rank() == 0) {
    check_nccl(api, api.get_unique_id(&id), "ncclGetUniqueId", 0);
    id_bytes.assign(reinterpret_cast<const uint8_t*>(&id),
                    reinterpret_cast<const uint8_t*>(&id) + sizeof(id));
  }
  host.broadcast(&id_bytes, 0);
  MIXSERVE_CHECK(id_bytes.size() == sizeof(id), "NCCL (rank ", host.rank(), "): rank 0 sent a ",
                 id_bytes.size(), "-byte id, expected ", sizeof(id));
  std::memcpy(&id, id_bytes.data(), sizeof(id));
  ncclComm_t comm = nullptr;
  check_nccl(api, api.comm_init_rank(&comm, host.size(), id, host.rank()), "ncclCommInitRank",
             host.rank());
  return std::make_unique<NcclCommunicator>(api, comm, host.rank(), host.size());
}

std::unique_ptr<DeviceCommunicator> make_staged_communicator(dist::Communicator& host) {
  return std::make_unique<StagedCommunicator>(host);
}

}  // namespace mixserve::cuda
