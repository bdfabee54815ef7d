// Device communicators: the staged one (two ranks sharing GPU 0) and NCCL (one GPU per rank),
// exact sums over f32 / bf16 / fp16 buffers of awkward sizes.
#include "cuda_test_support.h"

#ifdef MIXSERVE_HAVE_CUDA

#include <atomic>
#include <cstring>
#include <string>

#include "backend/cuda/interval_timer.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/nccl_communicator.h"
#include "backend/cuda/tp_reduce.h"
#include "dist/communicator.h"
#include "dist_test_support.h"

namespace mixserve {
namespace {

using namespace cuda_test;

// Rank r's input in dtype t (as raw bits: 4 bytes for f32, 2 for half types).
std::vector<uint8_t> rank_input(uint64_t seed, uint64_t call, int r, size_t n, DType t) {
  const std::vector<float> v = dist_test::inputs(seed, call, r, n);
  std::vector<uint8_t> bytes(n * dtype_size(t));
  if (t == DType::kF32) {
    std::memcpy(bytes.data(), v.data(), bytes.size());
  } else {
    const std::vector<uint16_t> h = to_half(v, t);
    std::memcpy(bytes.data(), h.data(), bytes.size());
  }
  return bytes;
}

// The float32 sum in rank order of the ranks' (rounded) inputs, rounded once to t.
std::vector<uint8_t> expected(uint64_t seed, uint64_t call, int size, size_t n, DType t) {
  std::vector<float> sum(n, 0.0f);
  for (int r = 0; r < size; ++r) {
    const std::vector<float> v = dist_test::inputs(seed, call, r, n);
    const std::vector<float> x = t == DType::kF32 ? v : rounded(v, t);
    for (size_t i = 0; i < n; ++i) sum[i] = r == 0 ? x[i] : sum[i] + x[i];
  }
  std::vector<uint8_t> bytes(n * dtype_size(t));
  if (t == DType::kF32) {
    std::memcpy(bytes.data(), sum.data(), bytes.size());
  } else {
    const std::vector<uint16_t> h = to_half(sum, t);
    std::memcpy(bytes.data(), h.data(), bytes.size());
  }
  return bytes;
}

// Every rank (a thread on device `device_of(r)`) reduces fresh buffers of each dtype and size
// through the communicator `make(host, r)` and compares the bits.
template <typename Make>
void check_device_all_reduce(int size, Make make, int (*device_of)(int)) {
  const uint64_t seed = dist_test::fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto hosts = dist::make_thread_group(size);
  std::atomic<int> bad{0};
  const auto errors = dist_test::run_ranks(size, [&](int r) {
    MIXSERVE_CUDA_CHECK(cudaSetDevice(device_of(r)));
    std::unique_ptr<cuda::DeviceCommunicator> comm = make(*hosts[r], r);
    if (comm->rank() != r || comm->size() != size) ++bad;
    cudaStream_t stream = nullptr;
    MIXSERVE_CUDA_CHECK(cudaStreamCreate(&stream));
    uint64_t call = 0;
    for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{100003}}) {
        for (int rep = 0; rep < 3; ++rep, ++call) {
          const std::vector<uint8_t> in = rank_input(seed, call, r, n, t);
          DeviceBuffer d = upload(in);
          comm->all_reduce_sum(d.get(), n, t, stream);
          MIXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
          if (download<uint8_t>(d, in.size()) != expected(seed, call, size, n, t)) ++bad;
        }
      }
    }
    MIXSERVE_CUDA_CHECK(cudaStreamDestroy(stream));
  });
  for (int r = 0; r < size; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  EXPECT_EQ(bad.load(), 0);
}

int device_zero(int) { return 0; }
int device_of_rank(int r) { return r; }

TEST(DistCudaCommunicator, StagedTwoRanksOnOneGpu) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  check_device_all_reduce(
      2, [](dist::Communicator& host, int) { return cuda::make_staged_communicator(host); },
      device_zero);
}

TEST(DistCudaCommunicator, StagedRefusesGraphCaptureAndOtherDtypes) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  auto hosts = dist::make_thread_group(1);
  auto comm = cuda::make_staged_communicator(*hosts[0]);
  EXPECT_FALSE(comm->capturable());
  DeviceBuffer d(64);
  EXPECT_THROW(comm->all_reduce_sum(d.get(), 4, DType::kI32, nullptr), Error);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  std::string error;
  try {
    comm->all_reduce_sum(d.get(), 4, DType::kF32, stream);
  } catch (const Error& e) {
    error = e.what();
  }
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  EXPECT_NE(error.find("graph capture"), std::string::npos) << error;
}

// Runs without a GPU: loading NCCL (or failing to, with advice) needs none.
TEST(DistCudaCommunicator, NcclLoadsOrSaysHowToFindIt) {
  std::string why;
  if (cuda::nccl_available(&why)) {
    EXPECT_EQ(why, "");
    EXPECT_GE(cuda::nccl_version(), 21000);  // 2.10+: bf16 all-reduce
    return;
  }
  EXPECT_NE(why.find("libnccl.so.2"), std::string::npos) << why;
  EXPECT_NE(why.find("LD_LIBRARY_PATH"), std::string::npos) << why;
  auto hosts = dist::make_thread_group(1);
  try {
    cuda::make_nccl_communicator(*hosts[0], 0);
    ADD_FAILURE() << "made an NCCL communicator without NCCL";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("LD_LIBRARY_PATH"), std::string::npos) << e.what();
  }
}

// MIXSERVE_COMM_TIMING's (and MIXSERVE_SYNC_TIMING's) timer: events around the step and each
// interval, folded into the sums at the next step or the summary; calls outside a step are
// ignored; the summary names what was timed.
TEST(DistCudaCommunicator, IntervalTimerSumsEagerSteps) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  cuda::IntervalTimer off("all-reduces");
  off.begin_step(nullptr);
  off.before(nullptr);
  off.after(nullptr);
  off.end_step(nullptr);
  EXPECT_NE(off.summary().find("0 eager steps: 0 all-reduces"), std::string::npos);
  cuda::IntervalTimer t("collectives");
  t.enable();
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  cuda::DeviceBuffer buf(size_t{64} << 20);
  t.before(s);  // outside a step: not counted
  t.after(s);
  for (int step = 0; step < 2; ++step) {
    t.begin_step(s);
    for (int call = 0; call < 3; ++call) {
      t.before(s);
      ASSERT_EQ(cudaMemsetAsync(buf.get(), call, buf.bytes(), s), cudaSuccess);
      t.after(s);
    }
    ASSERT_EQ(cudaMemsetAsync(buf.get(), 7, buf.bytes(), s), cudaSuccess);  // not a collective
    t.end_step(s);
  }
  const std::string sum = t.summary();
  std::printf("[comm timer] %s\n", sum.c_str());
  EXPECT_NE(sum.find("2 eager steps: 6 collectives took"), std::string::npos) << sum;
  // Three of the four 64 MiB memsets of a step are inside the timed calls: 60-90% of it.
  const double pct = std::stod(sum.substr(sum.find('(') + 1));
  EXPECT_GT(pct, 55.0) << sum;
  EXPECT_LT(pct, 95.0) << sum;
  cudaStreamDestroy(s);
}

// MIXSERVE_TP_REDUCE=bf16's conversions: round to nearest even, and back exactly; counts that
// end in the scalar tail (not multiples of 8) included.
TEST(DistCudaCommunicator, Bf16ReduceConversionsAreExact) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  for (size_t n : {size_t{1}, size_t{7}, size_t{8}, size_t{1003}, size_t{4096 * 17}}) {
    std::vector<float> x(n);
    std::normal_distribution<float> dist(0.0f, 30.0f);
    for (float& v : x) v = dist(rng());
    cuda::DeviceBuffer dx(n * 4), dh(n * 2), dy(n * 4);
    ASSERT_EQ(cudaMemcpy(dx.get(), x.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cuda::round_to_bf16(dx.as<float>(), dh.get(), n, nullptr), cudaSuccess);
    ASSERT_EQ(cuda::widen_bf16(dh.get(), dy.as<float>(), n, nullptr), cudaSuccess);
    std::vector<uint16_t> h(n);
    std::vector<float> y(n);
    ASSERT_EQ(cudaMemcpy(h.data(), dh.get(), n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(y.data(), dy.get(), n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    const std::vector<uint16_t> want = to_half(x, DType::kBF16);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(h[i], want[i]) << "n " << n << " element " << i << " value " << x[i];
      ASSERT_EQ(y[i], bf16_to_float(want[i])) << "n " << n << " element " << i;
    }
  }
}

TEST(DistCudaCommunicator, NcclTwoGpus) {
  MIXSERVE_SKIP_WITHOUT_GPU();
  if (cuda_device_count() < 2) {
    GTEST_SKIP() << "NCCL test needs 2 GPUs, this machine has " << cuda_device_count();
  }
  std::string why;
  if (!cuda::nccl_available(&why)) GTEST_SKIP() << "NCCL test: " << why;
  EXPECT_GE(cuda::nccl_version(), 20000);
  check_device_all_reduce(
      2,
      [](dist::Communicator& host, int r) {
        auto comm = cuda::make_nccl_communicator(host, r);
        EXPECT_TRUE(comm->capturable());
        return comm;
      },
      device_of_rank);
  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  ASSERT_NE(nvls, nullptr);
}

}  // namespace
}  // namespace mixserve

#endif  // MIXSERVE_HAVE_CUDA
