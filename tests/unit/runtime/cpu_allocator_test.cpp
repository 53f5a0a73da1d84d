// Tests of the CPU caching allocator (engine/runtime/cpu_allocator.cpp) and of CpuDevice's statistics on top
// of it: size classes, reuse of freed blocks, live vs reserved bytes, the cache cap, empty_cache, concurrent
// use, environment options, and that poisoned (0xFF-filled) blocks do not change a training step's numbers.
#include "engine/runtime/cpu_allocator.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/runtime/autograd.hpp"
#include "engine/runtime/device.hpp"
#include "engine/runtime/ops/ops.hpp"

namespace engine::rt {
namespace {

CpuAllocatorOptions cached(size_t limit) {
  CpuAllocatorOptions o;
  o.cache_limit_bytes = limit;
  return o;
}

TEST(CpuAllocatorClasses, RoundUpWithAtMostOneEighthWaste) {
  EXPECT_EQ(CpuCachingAllocator::class_bytes(0), 64u);
  EXPECT_EQ(CpuCachingAllocator::class_bytes(1), 64u);
  EXPECT_EQ(CpuCachingAllocator::class_bytes(64), 64u);
  EXPECT_EQ(CpuCachingAllocator::class_bytes(65), 128u);
  EXPECT_EQ(CpuCachingAllocator::class_bytes(512), 512u);
  EXPECT_EQ(CpuCachingAllocator::class_bytes(513), 576u);    // p = 512, step 64
  EXPECT_EQ(CpuCachingAllocator::class_bytes(4097), 4608u);  // p = 4096, step 512
  EXPECT_EQ(CpuCachingAllocator::class_bytes(1u << 20), 1u << 20);
  for (size_t b = 1; b < (size_t(1) << 26); b = b * 3 / 2 + 7) {
    const size_t c = CpuCachingAllocator::class_bytes(b);
    EXPECT_GE(c, b);
    EXPECT_EQ(c % 64, 0u) << b;
    if (b > 512) {
      EXPECT_LE(double(c), double(b) * 1.125 + 64) << b;
    }
    EXPECT_EQ(CpuCachingAllocator::class_bytes(c), c) << "a class size is its own class: " << b;
  }
}

TEST(CpuAllocator, FreedBlockIsReusedForTheSameClass) {
  CpuCachingAllocator a(cached(size_t(1) << 30));
  void* p = a.allocate(1000000);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  std::memset(p, 1, 1000000);
  a.deallocate(p, 1000000);
  EXPECT_EQ(a.stats().cached_bytes, int64_t(CpuCachingAllocator::class_bytes(1000000)));
  void* q = a.allocate(999999);  // same class
  EXPECT_EQ(q, p);
  EXPECT_EQ(a.stats().cache_hits, 1);
  EXPECT_EQ(a.stats().os_allocations, 1);
  EXPECT_EQ(a.stats().cached_bytes, 0);
  void* r = a.allocate(3000000);  // another class: a new block
  EXPECT_NE(r, q);
  EXPECT_EQ(a.stats().os_allocations, 2);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(r) % (size_t(2) << 20), 0u)
      << "blocks >= 2 MiB are huge-page aligned";
  a.deallocate(q, 999999);
  a.deallocate(r, 3000000);
}

TEST(CpuAllocator, ReservedCountsLiveAndCachedBlocks) {
  CpuCachingAllocator a(cached(size_t(1) << 30));
  const int64_t c1 = int64_t(CpuCachingAllocator::class_bytes(4096)),
                c2 = int64_t(CpuCachingAllocator::class_bytes(100000));
  void* p = a.allocate(4096);
  void* q = a.allocate(100000);
  EXPECT_EQ(a.stats().reserved_bytes, c1 + c2);
  a.deallocate(p, 4096);
  EXPECT_EQ(a.stats().reserved_bytes, c1 + c2) << "a cached block is still held from the OS";
  EXPECT_EQ(a.stats().cached_bytes, c1);
  a.deallocate(q, 100000);
  EXPECT_EQ(a.stats().peak_reserved_bytes, c1 + c2);
  a.empty_cache();
  EXPECT_EQ(a.stats().reserved_bytes, 0);
  EXPECT_EQ(a.stats().cached_bytes, 0);
  EXPECT_EQ(a.stats().peak_reserved_bytes, c1 + c2);
  a.reset_peak();
  EXPECT_EQ(a.stats().peak_reserved_bytes, 0);
  void* r = a.allocate(4096);  // after empty_cache: from the OS again
  EXPECT_EQ(a.stats().cache_hits, 0);
  EXPECT_EQ(a.stats().os_allocations, 3);
  a.deallocate(r, 4096);
}

TEST(CpuAllocator, CapEvictsLargestOtherClassesAndRefusesWhatDoesNotFit) {
  const size_t small = 64 * 1024, big = 512 * 1024;  // both are their own class sizes
  CpuCachingAllocator a(cached(big + 2 * small));
  void* b = a.allocate(big);
  void* s1 = a.allocate(small);
  void* s2 = a.allocate(small);
  void* s3 = a.allocate(small);
  a.deallocate(b, big);
  a.deallocate(s1, small);
  a.deallocate(s2, small);
  EXPECT_EQ(a.stats().cached_bytes, int64_t(big + 2 * small));  // exactly at the cap
  a.deallocate(s3, small);  // evicts the big block (largest other class) to make room
  EXPECT_EQ(a.stats().cached_bytes, int64_t(3 * small));
  EXPECT_EQ(a.stats().reserved_bytes, int64_t(3 * small));
  void* b2 = a.allocate(big);
  EXPECT_EQ(a.stats().cache_hits, 0) << "the big block was returned to the OS";
  // A block larger than the cap is never cached.
  a.set_cache_limit(small);
  EXPECT_LE(a.stats().cached_bytes, int64_t(small)) << "lowering the cap evicts at once";
  a.deallocate(b2, big);
  EXPECT_LE(a.stats().cached_bytes, int64_t(small));
  EXPECT_EQ(a.stats().reserved_bytes, a.stats().cached_bytes);
}

TEST(CpuAllocator, CapZeroReturnsEveryBlock) {
  CpuCachingAllocator a(cached(0));
  void* p = a.allocate(1 << 20);
  a.deallocate(p, 1 << 20);
  EXPECT_EQ(a.stats().cached_bytes, 0);
  EXPECT_EQ(a.stats().reserved_bytes, 0);
  void* q = a.allocate(1 << 20);
  EXPECT_EQ(a.stats().cache_hits, 0);
  a.deallocate(q, 1 << 20);
}

TEST(CpuAllocator, PoisonFillsEveryHandedOutBlock) {
  CpuAllocatorOptions o = cached(size_t(1) << 30);
  o.poison = true;
  CpuCachingAllocator a(o);
  auto* p = static_cast<float*>(a.allocate(4000));
  EXPECT_TRUE(std::isnan(p[0]) && std::isnan(p[999]));
  for (int i = 0; i < 1000; ++i) p[i] = 0.0f;
  a.deallocate(p, 4000);
  auto* q = static_cast<float*>(a.allocate(4000));
  ASSERT_EQ(q, p);
  EXPECT_TRUE(std::isnan(q[0]) && std::isnan(q[500])) << "a reused block is poisoned again";
  a.deallocate(q, 4000);
}

TEST(CpuAllocator, ConcurrentAllocateAndFreeKeepTheBooks) {
  CpuCachingAllocator a(cached(size_t(8) << 20));
  constexpr int kThreads = 4, kIters = 3000;
  std::vector<std::thread> threads;
  std::vector<int> bad(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 gen(static_cast<uint32_t>(t));
      std::vector<std::pair<unsigned char*, size_t>> held;
      for (int i = 0; i < kIters; ++i) {
        if (held.size() < 8 && (gen() % 3 != 0 || held.empty())) {
          const size_t bytes = 1 + gen() % 200000;
          auto* p = static_cast<unsigned char*>(a.allocate(bytes));
          std::memset(p, t + 1, bytes);  // a block handed to two threads at once would be overwritten
          held.emplace_back(p, bytes);
        } else {
          const size_t k = gen() % held.size();
          auto [p, bytes] = held[k];
          if (p[0] != t + 1 || p[bytes - 1] != t + 1) ++bad[size_t(t)];
          a.deallocate(p, bytes);
          held.erase(held.begin() + static_cast<long>(k));
        }
      }
      for (auto [p, bytes] : held) a.deallocate(p, bytes);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(bad[size_t(t)], 0) << "thread " << t;
  const CpuAllocatorStats s = a.stats();
  EXPECT_EQ(s.reserved_bytes, s.cached_bytes) << "nothing is live, so everything held is cached";
  EXPECT_LE(s.cached_bytes, int64_t(8) << 20);
  EXPECT_GT(s.cache_hits, 0);
  a.empty_cache();
  EXPECT_EQ(a.stats().reserved_bytes, 0);
}

TEST(CpuAllocatorOptionsTest, ReadFromTheEnvironment) {
  ::setenv("ENGINE_CPU_CACHE_BYTES", "512M", 1);
  ::setenv("ENGINE_CPU_HUGEPAGES", "0", 1);
  ::setenv("ENGINE_CPU_ALLOC_POISON", "1", 1);
  CpuAllocatorOptions o = CpuAllocatorOptions::from_environment();
  EXPECT_EQ(o.cache_limit_bytes, size_t(512) << 20);
  EXPECT_FALSE(o.hugepages);
  EXPECT_TRUE(o.poison);
  ::setenv("ENGINE_CPU_CACHE_BYTES", "lots", 1);
  EXPECT_THROW(CpuAllocatorOptions::from_environment(), Error);
  ::setenv("ENGINE_CPU_CACHE_BYTES", "3T", 1);
  EXPECT_THROW(CpuAllocatorOptions::from_environment(), Error);
  ::unsetenv("ENGINE_CPU_CACHE_BYTES");
  ::setenv("ENGINE_CPU_ALLOC_POISON", "maybe", 1);
  EXPECT_THROW(CpuAllocatorOptions::from_environment(), Error);
  ::unsetenv("ENGINE_CPU_HUGEPAGES");
  ::unsetenv("ENGINE_CPU_ALLOC_POISON");
}

TEST(CpuDeviceMemory, LiveBytesAreWhatTensorsHoldNotWhatTheCacheKeeps) {
  CpuDevice dev(1, cached(size_t(1) << 30));
  const MemoryStats s0 = dev.memory_stats();
  {
    Tensor a = Tensor::empty({1000}, ENG_F32, dev);  // 4000 bytes
    EXPECT_EQ(dev.memory_stats().current_bytes - s0.current_bytes, 4000);
  }
  MemoryStats s1 = dev.memory_stats();
  EXPECT_EQ(s1.current_bytes, s0.current_bytes);
  EXPECT_EQ(s1.cached_bytes, int64_t(CpuCachingAllocator::class_bytes(4000)));
  ASSERT_EQ(s0.current_bytes, 0);
  EXPECT_EQ(s1.reserved_bytes, s1.cached_bytes) << "nothing is live on this device";
  dev.reset_peak_memory();
  {
    Tensor b = Tensor::empty({500}, ENG_F32, dev);  // 2000 bytes: another class, not the cached one
  }
  EXPECT_EQ(dev.memory_stats().peak_bytes - dev.memory_stats().current_bytes, 2000);
  dev.empty_cache();
  EXPECT_EQ(dev.memory_stats().cached_bytes, 0);
  EXPECT_EQ(dev.memory_stats().reserved_bytes, 0);
}

// A small transformer-like step (linear, RMSNorm, causal attention, SwiGLU, fused linear + cross-entropy),
// forward and backward, on `dev`; returns the loss followed by every gradient.
std::vector<float> training_step(CpuDevice& dev) {
  const int64_t B = 1, T = 24, C = 32, H = 4, D = 8, V = 50, I = 48;
  std::mt19937 gen(11);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  auto weight = [&](const Dims& shape) {
    std::vector<float> v(static_cast<size_t>(shape.numel()));
    for (float& x : v) x = dist(gen);
    return Tensor::from_vector(shape, ENG_F32, dev, v);
  };
  Tape tape;
  std::vector<std::shared_ptr<GradSink>> sinks;
  auto param = [&](const Dims& shape) {
    sinks.push_back(std::make_shared<GradSink>(shape, ENG_F32, dev));
    return tape.leaf(weight(shape), sinks.back());
  };
  Tensor x = param({B, T, C}), norm = param({C}), wq = param({C, C}), wk = param({C, C}), wv = param({C, C}),
         wg = param({I, C}), wu = param({I, C}), wd = param({C, I}), head = param({V, C});
  std::vector<int32_t> labels(static_cast<size_t>(B * T));
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int32_t>((i * 7 + 3) % V);
  labels[3] = -100;
  auto run = [&](std::unique_ptr<Node> n, std::vector<Tensor> in) {
    return tape.apply(std::move(n), in).at(0);
  };
  auto reshape = [&](const Tensor& t, std::vector<int64_t> s) {
    return run(ops::make_reshape(static_cast<int>(s.size()), s.data()), {t});
  };
  Tensor h = run(ops::make_rms_norm(1e-6), {x, norm});
  Tensor q = reshape(run(ops::make_linear(), {h, wq, Tensor()}), {B, T, H, D});
  Tensor k = reshape(run(ops::make_linear(), {h, wk, Tensor()}), {B, T, H, D});
  Tensor v = reshape(run(ops::make_linear(), {h, wv, Tensor()}), {B, T, H, D});
  Tensor a = reshape(run(ops::make_attention(1.0 / std::sqrt(double(D))), {q, k, v, Tensor()}), {B, T, C});
  Tensor r = run(ops::make_add(), {x, a});
  Tensor s = run(ops::make_swiglu(),
                 {run(ops::make_linear(), {r, wg, Tensor()}), run(ops::make_linear(), {r, wu, Tensor()})});
  Tensor y = reshape(run(ops::make_add(), {r, run(ops::make_linear(), {s, wd, Tensor()})}), {B * T, C});
  Tensor loss = run(ops::make_linear_cross_entropy(-100, 1.0 / double(B * T - 1)),
                    {y, head, Tensor::from_vector({B * T}, ENG_I32, dev, labels)});
  std::vector<float> out = {static_cast<float>(loss.item())};
  tape.backward(loss);
  for (auto& sink : sinks) {
    std::vector<float> g = sink->grad().to_float_vector();
    out.insert(out.end(), g.begin(), g.end());
  }
  return out;
}

TEST(CpuDeviceMemory, PoisonedAndReusedBlocksGiveBitwiseIdenticalTrainingSteps) {
  CpuAllocatorOptions plain = cached(0);
  CpuAllocatorOptions poisoned = cached(size_t(1) << 30);
  poisoned.poison = true;
  CpuDevice fresh(2, plain), reused(2, poisoned);
  const std::vector<float> want = training_step(fresh);
  ASSERT_FALSE(std::isnan(want[0]));
  for (int rep = 0; rep < 3; ++rep) {  // later repetitions run on cached, re-poisoned blocks
    const std::vector<float> got = training_step(reused);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0) << "repetition " << rep;
  }
  EXPECT_GT(reused.memory_stats().cache_hits, 0);
}

}  // namespace
}  // namespace engine::rt
