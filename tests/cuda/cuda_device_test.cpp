// CudaDevice and its caching allocator (engine/runtime/devices/cuda/): size bins, reuse of freed blocks as
// cache hits with no further cudaMalloc, live vs reserved statistics, empty_cache, stream-ordered frees (a
// block freed while a GEMM still reads it and handed out again at once is not overwritten before the GEMM is
// done), uploads through the pinned staging buffers (a 200 MiB mmapped file round-trips exactly and may be
// unmapped as soon as the call returns), the synchronous copies, poisoning, the properties, and that an
// absurd request (1 PiB) is an engine::Error with an actionable message, not a crash.
#include "engine/runtime/devices/cuda/cuda_device.hpp"

#include <cuda_runtime.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/core/error.hpp"
#include "kernels/cuda/gemm.cuh"
#include "tests/cuda/cuda_test_support.hpp"

namespace engine::rt {
namespace {

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  std::mt19937_64 gen(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t x = gen();
    std::memcpy(v.data() + i, &x, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<uint8_t>(gen());
  return v;
}

TEST(CudaAllocatorBins, RoundUpTo512BytesBelow1MiBAnd2MiBAbove) {
  using A = CudaCachingAllocator;
  EXPECT_EQ(A::round_bytes(0), 512u);
  EXPECT_EQ(A::round_bytes(1), 512u);
  EXPECT_EQ(A::round_bytes(512), 512u);
  EXPECT_EQ(A::round_bytes(513), 1024u);
  EXPECT_EQ(A::round_bytes((1u << 20) - 1), 1u << 20);
  EXPECT_EQ(A::round_bytes(1u << 20), 2u << 20);
  EXPECT_EQ(A::round_bytes(2u << 20), 2u << 20);
  EXPECT_EQ(A::round_bytes((2u << 20) + 1), 4u << 20);
  for (size_t b = 1; b < (size_t(1) << 32); b = b * 3 / 2 + 7) {
    const size_t r = A::round_bytes(b);
    EXPECT_GE(r, b);
    EXPECT_LT(r - b, b < A::kLargeThreshold ? A::kSmallGranularity : A::kLargeGranularity);
  }
  EXPECT_EQ(A::round_bytes(std::numeric_limits<size_t>::max()), std::numeric_limits<size_t>::max());
}

class CudaDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    CudaAllocatorOptions plain;  // no poisoning, whatever the environment says
    device_ = std::make_unique<CudaDevice>(0, plain);
  }
  std::unique_ptr<CudaDevice> device_;
};

TEST_F(CudaDeviceTest, Properties) {
  EXPECT_EQ(device_->type(), DeviceType::CUDA);
  EXPECT_EQ(device_->index(), 0);
  EXPECT_FALSE(device_->name().empty());
  EXPECT_GT(device_->sm_count(), 0);
  EXPECT_GE(device_->compute_capability(), 50);
  EXPECT_GT(device_->total_memory(), size_t(1) << 30);
  EXPECT_NE(device_->cublaslt_handle(), nullptr);
  EXPECT_NE(device_->cublaslt_workspace(), nullptr);
  EXPECT_EQ(device_->cublaslt_workspace_bytes(), size_t(32) << 20);
  EXPECT_NE(device_->compute_stream(), nullptr);
  EXPECT_NE(device_->copy_stream(), nullptr);
  EXPECT_NE(device_->compute_stream(), device_->copy_stream());
  EXPECT_EQ(device_->stream(), device_->compute_stream());
  EXPECT_NE(device_->label().find(device_->name()), std::string::npos);
}

TEST_F(CudaDeviceTest, FreedBlocksAreReusedAsCacheHits) {
  void* p = device_->allocate(1000);
  ASSERT_NE(p, nullptr);
  MemoryStats s = device_->memory_stats();
  EXPECT_EQ(s.current_bytes, 1000);
  EXPECT_EQ(s.reserved_bytes, 1024);
  EXPECT_EQ(s.cached_bytes, 0);
  EXPECT_EQ(s.cache_hits, 0);
  EXPECT_EQ(s.allocations, 1);
  EXPECT_EQ(device_->allocator().stats().driver_allocations, 1);

  device_->deallocate(p, 1000);
  s = device_->memory_stats();
  EXPECT_EQ(s.current_bytes, 0);
  EXPECT_EQ(s.peak_bytes, 1000);
  EXPECT_EQ(s.reserved_bytes, 1024);
  EXPECT_EQ(s.cached_bytes, 1024);

  // The same size, and another size of the same bin: the cached block both times, no cudaMalloc.
  void* q = device_->allocate(1000);
  EXPECT_EQ(q, p);
  device_->deallocate(q, 1000);
  void* r = device_->allocate(1024);
  EXPECT_EQ(r, p);
  s = device_->memory_stats();
  EXPECT_EQ(s.cache_hits, 2);
  EXPECT_EQ(s.current_bytes, 1024);
  EXPECT_EQ(s.cached_bytes, 0);
  EXPECT_EQ(device_->allocator().stats().driver_allocations, 1);

  // Another bin is a new block; the peak follows the live bytes.
  void* big = device_->allocate((3u << 20) + 5);
  s = device_->memory_stats();
  EXPECT_EQ(s.reserved_bytes, 1024 + (4 << 20));
  EXPECT_EQ(s.peak_reserved_bytes, 1024 + (4 << 20));
  EXPECT_EQ(s.current_bytes, 1024 + (3 << 20) + 5);
  EXPECT_EQ(device_->allocator().stats().driver_allocations, 2);
  device_->deallocate(big, (3u << 20) + 5);
  device_->deallocate(r, 1024);
  device_->reset_peak_memory();
  s = device_->memory_stats();
  EXPECT_EQ(s.peak_bytes, 0);
  EXPECT_EQ(s.cached_bytes, 1024 + (4 << 20));

  // empty_cache gives everything back to the driver.
  device_->empty_cache();
  s = device_->memory_stats();
  EXPECT_EQ(s.cached_bytes, 0);
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(device_->allocator().stats().driver_frees, 2);
}

TEST_F(CudaDeviceTest, ASteadyStepLoopStopsCallingCudaMalloc) {
  const size_t sizes[] = {4096, 100000, 3 << 20, 17, 64 << 20, 4096, 700000};
  int64_t after_first = 0;
  for (int step = 0; step < 4; ++step) {
    std::vector<void*> blocks;
    for (size_t n : sizes) blocks.push_back(device_->allocate(n));
    for (size_t i = 0; i < blocks.size(); ++i) device_->deallocate(blocks[i], sizes[i]);
    if (step == 0) after_first = device_->allocator().stats().driver_allocations;
  }
  const CudaAllocatorStats s = device_->allocator().stats();
  EXPECT_EQ(after_first, 7);
  EXPECT_EQ(s.driver_allocations, after_first);
  EXPECT_EQ(s.cache_hits, 3 * 7);
  EXPECT_EQ(s.current_bytes, 0);
}

TEST_F(CudaDeviceTest, UnknownPointersAreIgnored) {
  void* p = device_->allocate(256);
  const MemoryStats before = device_->memory_stats();
  int on_stack = 0;
  device_->deallocate(&on_stack, 4);  // logged, ignored
  const MemoryStats after = device_->memory_stats();
  EXPECT_EQ(after.current_bytes, before.current_bytes);
  EXPECT_EQ(after.cached_bytes, before.cached_bytes);
  device_->deallocate(p, 256);
  device_->deallocate(p, 256);  // a second free is ignored too
  EXPECT_EQ(device_->memory_stats().cached_bytes, 512);
  device_->deallocate(nullptr, 0);
}

TEST_F(CudaDeviceTest, AnAbsurdRequestIsAnEngineErrorThatSaysWhatToDo) {
  const size_t pib = size_t(1) << 50;
  void* keep = device_->allocate(1 << 20);
  device_->deallocate(device_->allocate(4096), 4096);  // something in the cache
  try {
    device_->allocate(pib);
    FAIL() << "1 PiB was allocated";
  } catch (const engine::Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.status(), ENG_ERR_OUT_OF_MEMORY);
    for (const char* part : {"out of CUDA memory on cuda:0", "1.00 PiB", "1125899906842624 bytes", "live",
                             "reserved", "train.micro_batch_size", "train.activation_checkpointing"})
      EXPECT_NE(m.find(part), std::string::npos) << "\"" << part << "\" not in: " << m;
  }
  EXPECT_THROW(device_->allocate(std::numeric_limits<size_t>::max()), engine::Error);
  // The device still works, the cache was emptied on the way and the live block is untouched.
  const MemoryStats s = device_->memory_stats();
  EXPECT_EQ(s.current_bytes, 1 << 20);
  EXPECT_EQ(s.cached_bytes, 0);
  void* p = device_->allocate(4096);
  const std::vector<uint8_t> data = random_bytes(4096, 3);
  std::vector<uint8_t> back(4096);
  device_->copy_from_host(p, data.data(), data.size());
  device_->copy_to_host(back.data(), p, back.size());
  EXPECT_EQ(back, data);
  device_->deallocate(p, 4096);
  device_->deallocate(keep, 1 << 20);
}

TEST_F(CudaDeviceTest, SynchronousCopiesFillAndCopyWithin) {
  const size_t n = 3 * 1000 * 1000 + 7;  // not a multiple of anything
  const std::vector<uint8_t> data = random_bytes(n, 11);
  auto* a = static_cast<uint8_t*>(device_->allocate(n));
  auto* b = static_cast<uint8_t*>(device_->allocate(n));
  device_->copy_from_host(a, data.data(), n);
  device_->copy_within(b, a, n);
  device_->fill_zero(a + 100, 1000);
  std::vector<uint8_t> got_a(n), got_b(n);
  device_->copy_to_host(got_a.data(), a, n);
  device_->copy_to_host(got_b.data(), b, n);
  EXPECT_EQ(got_b, data);
  size_t wrong = 0;  // got_a must be data with bytes [100, 1100) zeroed
  for (size_t k = 0; k < n; ++k) wrong += got_a[k] != (k >= 100 && k < 1100 ? uint8_t(0) : data[k]);
  EXPECT_EQ(wrong, 0u);
  device_->deallocate(a, n);
  device_->deallocate(b, n);
}

// A temporary file of `data`, mmapped read-only: the pageable memory of a safetensors tensor.
class MappedFile {
 public:
  explicit MappedFile(const std::vector<uint8_t>& data) : size_(data.size()) {
    path_ = (std::filesystem::temp_directory_path() / ("engine_cuda_upload_" + std::to_string(getpid())))
                .string();
    FILE* f = std::fopen(path_.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(std::fwrite(data.data(), 1, data.size(), f), data.size());
    std::fclose(f);
    const int fd = open(path_.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0);
    addr_ = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    EXPECT_NE(addr_, MAP_FAILED);
  }
  ~MappedFile() {
    unmap();
    std::remove(path_.c_str());
  }
  const void* data() const { return addr_; }
  void unmap() {
    if (addr_ && addr_ != MAP_FAILED) munmap(addr_, size_);
    addr_ = nullptr;
  }

 private:
  std::string path_;
  size_t size_;
  void* addr_ = nullptr;
};

TEST_F(CudaDeviceTest, AsyncUploadOfAMappedFileThroughPinnedStagingRoundTrips) {
  // 200 MiB + a tail: four chunks through the two 64 MiB staging buffers, the last one partial.
  const size_t n = (size_t(200) << 20) + 12345;
  const std::vector<uint8_t> data = random_bytes(n, 21);
  MappedFile file(data);
  auto* dst = static_cast<uint8_t*>(device_->allocate(n + 1));
  // An odd destination offset, as a tensor inside a larger block may have.
  device_->copy_from_host_async(dst + 1, file.data(), n);
  file.unmap();  // `src` may go away as soon as the call returns
  std::vector<uint8_t> back(n);
  device_->copy_to_host(back.data(), dst + 1, n);  // on the compute stream: it waits for the upload
  EXPECT_TRUE(back == data) << "the uploaded bytes differ";
  // A second upload from ordinary heap memory into the same block reuses the staging buffers.
  const std::vector<uint8_t> second = random_bytes(n, 22);
  device_->copy_from_host_async(dst, second.data(), n);
  device_->synchronize();
  device_->copy_to_host(back.data(), dst, n);
  EXPECT_TRUE(back == second) << "the second upload differs";
  device_->deallocate(dst, n + 1);
}

TEST_F(CudaDeviceTest, AFreedBlockIsNotOverwrittenWhileAKernelStillReadsIt) {
  // x (M, K) fp32 feeds a long GEMM; right after enqueueing it, x is freed, the same block is handed out
  // again (a cache hit) and overwritten by an upload on the copy stream. Stream order must keep the GEMM's
  // result equal to the one computed from the original x.
  const int64_t M = 8192, N = 4096, K = 8192;
  const size_t x_bytes = size_t(M * K) * 4, w_bytes = size_t(K * N) * 4, y_bytes = size_t(M * N) * 4;
  auto to_floats = [](const std::vector<uint8_t>& bytes) {
    std::vector<float> f(bytes.size() / 4);
    for (size_t i = 0; i < f.size(); ++i) f[i] = float(bytes[i] % 200) / 100.0f - 1.0f;
    return f;
  };
  const std::vector<float> x_host = to_floats(random_bytes(x_bytes, 31));
  const std::vector<float> w_host = to_floats(random_bytes(w_bytes, 32));
  const std::vector<float> other(size_t(M * K), 1000.0f);
  auto* stream = static_cast<cudaStream_t>(device_->compute_stream());

  auto* w = static_cast<float*>(device_->allocate(w_bytes));
  auto* y_ref = static_cast<float*>(device_->allocate(y_bytes));
  auto* y = static_cast<float*>(device_->allocate(y_bytes));
  device_->copy_from_host(w, w_host.data(), w_bytes);
  auto* x = static_cast<float*>(device_->allocate(x_bytes));
  device_->copy_from_host(x, x_host.data(), x_bytes);
  cuda::gemm<float, float>(device_->gemm_runner(), stream, false, false, M, N, K, 1.0f, x, K, w, N, 0.0f,
                           y_ref, N);
  device_->synchronize();

  // Several passes, so that the GPU is still reading x well after the host has staged the first chunk.
  for (int pass = 0; pass < 6; ++pass)
    cuda::gemm<float, float>(device_->gemm_runner(), stream, false, false, M, N, K, 1.0f, x, K, w, N, 0.0f, y,
                             N);
  device_->deallocate(x, x_bytes);  // no wait: stream-ordered
  auto* x2 = static_cast<float*>(device_->allocate(x_bytes));
  EXPECT_EQ(x2, x);  // the same block, at once
  device_->copy_from_host_async(x2, other.data(), x_bytes);
  device_->synchronize();

  std::vector<float> got(size_t(M * N)), want(size_t(M * N));
  device_->copy_to_host(got.data(), y, y_bytes);
  device_->copy_to_host(want.data(), y_ref, y_bytes);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), y_bytes), 0) << "the GEMM read the overwritten block";
  std::vector<float> x2_back(size_t(M * K));
  device_->copy_to_host(x2_back.data(), x2, x_bytes);
  EXPECT_EQ(x2_back, other);
  for (void* p : {static_cast<void*>(w), static_cast<void*>(y_ref), static_cast<void*>(y)})
    device_->deallocate(p, 0);
  device_->deallocate(x2, x_bytes);
}

TEST_F(CudaDeviceTest, ConstantBuffersAreUploadedOncePerContent) {
  const std::vector<float> table = {1.0f, 0.5f, 0.25f, 0.125f, 3.0f};
  const std::vector<float> same = table;  // other host memory, the same bytes
  std::vector<float> other = table;
  other[4] = 4.0f;
  const void* a = device_->constant_buffer(table.data(), table.size() * sizeof(float));
  const int64_t live = device_->memory_stats().current_bytes;
  EXPECT_EQ(device_->constant_buffer(same.data(), same.size() * sizeof(float)), a);
  EXPECT_EQ(device_->memory_stats().current_bytes, live);  // no second copy
  const void* b = device_->constant_buffer(other.data(), other.size() * sizeof(float));
  EXPECT_NE(b, a);
  std::vector<float> back(table.size());
  device_->copy_to_host(back.data(), a, back.size() * sizeof(float));
  EXPECT_EQ(back, table);
  device_->copy_to_host(back.data(), b, back.size() * sizeof(float));
  EXPECT_EQ(back, other);
}

TEST(CudaDevicePoison, HandedOutBlocksAreFilledWithOnes) {
  SKIP_WITHOUT_GPU();
  CudaAllocatorOptions poison;
  poison.poison = true;
  CudaDevice device(0, poison);
  const size_t n = 5000;
  void* p = device.allocate(n);
  std::vector<uint8_t> back(n, 0);
  device.copy_to_host(back.data(), p, n);
  EXPECT_EQ(back, std::vector<uint8_t>(n, 0xFF));
  device.fill_zero(p, n);
  device.deallocate(p, n);
  void* q = device.allocate(n);  // a cache hit, poisoned again
  EXPECT_EQ(q, p);
  device.copy_to_host(back.data(), q, n);
  EXPECT_EQ(back, std::vector<uint8_t>(n, 0xFF));
  device.deallocate(q, n);
}

TEST(CudaDeviceRegistry, OneDevicePerIndexForTheProcess) {
  SKIP_WITHOUT_GPU();
  CudaDevice& a = cuda_device(0);
  CudaDevice& b = cuda_device(0);
  EXPECT_EQ(&a, &b);
  const int count = cuda_device_count();
  EXPECT_THROW(cuda_device(count), engine::Error);
  EXPECT_THROW(cuda_device(-1), engine::Error);
}

}  // namespace
}  // namespace engine::rt
