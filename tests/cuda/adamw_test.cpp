// plugins/adamw/kernels/adamw_cuda.cu (the fused multi-tensor AdamW step) against its CPU reference
// adamw::update (plugins/adamw/adamw_update.hpp): many tensors of odd sizes (0, 1, 3, 7, 1000, 8193, 65537)
// in one call (more than one launch's worth), f32 and bf16 gradients, aligned and unaligned pointers (each
// array shifted on its own), weight decay on and off, per-tensor lr and step, grad_scale 1 and != 1, both
// forms of the exp_avg lerp, three consecutive steps; guard elements around every array must stay untouched.
//
// Tolerance: none. The kernel uses explicitly rounded fp32 intrinsics in the reference's order of operations
// (no FMA contraction, IEEE division and square root), so p, exp_avg and exp_avg_sq must equal the CPU's bit
// for bit after every step (a bf16 gradient is compared against the reference run on the same bf16 values
// widened to fp32, which is exact). A failure prints the first differing element and rel_error (max abs
// diff / max |ref|, the norm of cuda_test_support.hpp) to show how far off it is. Bitwise repeatability: two
// runs from the same state give the same bits.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "plugins/adamw/adamw_update.hpp"
#include "plugins/adamw/kernels/adamw_cuda.cuh"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda_test::from_bf16;
using engine::cuda_test::random_values;
using engine::cuda_test::rel_error;
using engine::cuda_test::to_bf16;

constexpr int64_t kGuard = 5;  // poisoned elements after each array (and `offset` before it)

#define CUDA_OK(call) \
  ASSERT_EQ((call), cudaSuccess) << #call << ": " << cudaGetErrorString(cudaGetLastError())

// A device array of n T at element offset `offset` inside a poisoned (all bits set) allocation.
template <typename T>
class GuardedArray {
 public:
  GuardedArray(int64_t n, int64_t offset) : n_(n), offset_(offset) {
    const size_t total = static_cast<size_t>(offset + n + kGuard);
    if (cudaMalloc(&base_, total * sizeof(T)) != cudaSuccess) throw std::bad_alloc();
    cudaMemset(base_, 0xFF, total * sizeof(T));
  }
  ~GuardedArray() { cudaFree(base_); }
  GuardedArray(const GuardedArray&) = delete;
  GuardedArray& operator=(const GuardedArray&) = delete;

  T* get() const { return static_cast<T*>(base_) + offset_; }
  void upload(const std::vector<T>& v) const {
    cudaMemcpy(get(), v.data(), static_cast<size_t>(n_) * sizeof(T), cudaMemcpyHostToDevice);
  }
  // The n elements; `guards_intact` says whether every guard element still has all bits set.
  std::vector<T> download(bool* guards_intact) const {
    const size_t total = static_cast<size_t>(offset_ + n_ + kGuard);
    std::vector<unsigned char> all(total * sizeof(T));
    cudaMemcpy(all.data(), base_, all.size(), cudaMemcpyDeviceToHost);
    bool ok = true;
    for (size_t b = 0; b < static_cast<size_t>(offset_) * sizeof(T); ++b) ok = ok && all[b] == 0xFF;
    for (size_t b = static_cast<size_t>(offset_ + n_) * sizeof(T); b < all.size(); ++b)
      ok = ok && all[b] == 0xFF;
    *guards_intact = ok;
    std::vector<T> out(static_cast<size_t>(n_));
    if (n_ > 0) std::memcpy(out.data(), all.data() + offset_ * sizeof(T), out.size() * sizeof(T));
    return out;
  }

 private:
  void* base_ = nullptr;
  int64_t n_, offset_;
};

struct Spec {
  int64_t n;
  bool bf16;
  double weight_decay;
  int64_t off_p = 0, off_m = 0, off_v = 0, off_g = 0;  // element offsets (unaligned when not 0 mod 4)
};

// One parameter: the CPU reference state and the device state.
struct Param {
  Spec spec;
  adamw::Hyper h;
  int64_t steps;
  std::vector<float> p, m, v;
  GuardedArray<float> dp, dm, dv;
  GuardedArray<float> dg32;
  GuardedArray<__nv_bfloat16> dg16;
  Param(const Spec& s, uint64_t seed)
      : spec(s),
        dp(s.n, s.off_p),
        dm(s.n, s.off_m),
        dv(s.n, s.off_v),
        dg32(s.bf16 ? 0 : s.n, s.off_g),
        dg16(s.bf16 ? s.n : 0, s.off_g) {
    const size_t n = static_cast<size_t>(s.n);
    p = random_values(n, seed);
    m = random_values(n, seed + 1, -0.1f, 0.1f);
    v = random_values(n, seed + 2, 0.0f, 0.01f);  // exp_avg_sq >= 0
    dp.upload(p);
    dm.upload(m);
    dv.upload(v);
  }
};

std::string first_difference(const std::vector<float>& got, const std::vector<float>& want) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      return "element " + std::to_string(i) + ": got " + std::to_string(got[i]) + ", want " +
             std::to_string(want[i]) + " (rel_error " + std::to_string(rel_error(got, want)) + ")";
    }
  }
  return "";
}

void expect_bitwise(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_EQ(first_difference(got, want), "") << what;
}

// Steps every parameter `steps` times on the GPU (one fused_step call per step, on a stream of its own) and
// on the CPU, and compares all state bitwise after each step.
void run_and_compare(std::vector<Param*>& params, double beta1, double grad_scale, int steps, uint64_t seed) {
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int step = 0; step < steps; ++step) {
    std::vector<adamw::cuda::TensorArgs> args;
    std::vector<std::vector<float>> grads;
    for (size_t k = 0; k < params.size(); ++k) {
      Param& q = *params[k];
      const size_t n = static_cast<size_t>(q.spec.n);
      std::vector<float> g = random_values(n, seed + 1000 * step + 7 * k, -2.0f, 2.0f);
      if (q.spec.bf16) {
        const auto g16 = to_bf16(g);
        if (n > 0) cudaMemcpy(q.dg16.get(), g16.data(), n * sizeof(__nv_bfloat16), cudaMemcpyHostToDevice);
        g = from_bf16(g16);  // the reference sees the values the kernel reads
      } else {
        q.dg32.upload(g);
      }
      q.h.beta1 = beta1;
      q.h.grad_scale = grad_scale;
      q.steps += 1;
      const adamw::Coefficients c = adamw::coefficients(q.h, q.steps);
      adamw::cuda::TensorArgs a;
      a.p = q.dp.get();
      a.m = q.dm.get();
      a.v = q.dv.get();
      a.g = q.spec.bf16 ? static_cast<const void*>(q.dg16.get()) : static_cast<const void*>(q.dg32.get());
      a.n = q.spec.n;
      a.g_type = q.spec.bf16 ? adamw::cuda::GradType::BF16 : adamw::cuda::GradType::F32;
      a.decayed = c.decayed ? 1 : 0;
      a.decay = c.decay;
      a.step_size = c.step_size;
      a.bc2_sqrt = c.bc2_sqrt;
      args.push_back(a);
      grads.push_back(std::move(g));
    }
    const adamw::Coefficients c0 = adamw::coefficients(params.front()->h, 1);
    adamw::cuda::SharedArgs shared;
    shared.w = c0.w;
    shared.b2 = c0.b2;
    shared.one_minus_b2 = c0.one_minus_b2;
    shared.eps = c0.eps;
    shared.grad_scale = c0.grad_scale;
    shared.scaled = c0.scaled ? 1 : 0;

    CUDA_OK(cudaDeviceSynchronize());  // the uploads above went through the legacy stream
    CUDA_OK(adamw::cuda::fused_step(stream, args.data(), static_cast<int64_t>(args.size()), shared));
    CUDA_OK(cudaStreamSynchronize(stream));

    for (size_t k = 0; k < params.size(); ++k) {
      Param& q = *params[k];
      adamw::update(q.p.data(), q.m.data(), q.v.data(), grads[k].data(), q.spec.n, q.h, q.steps);
      const std::string what = "tensor " + std::to_string(k) + " (n " + std::to_string(q.spec.n) +
                               (q.spec.bf16 ? ", bf16 g" : ", f32 g") + ", wd " +
                               std::to_string(q.h.weight_decay) + ", offsets " +
                               std::to_string(q.spec.off_p) + "/" + std::to_string(q.spec.off_m) + "/" +
                               std::to_string(q.spec.off_v) + "/" + std::to_string(q.spec.off_g) + ", step " +
                               std::to_string(q.steps) + ")";
      bool gp = false, gm = false, gv = false;
      expect_bitwise(q.dp.download(&gp), q.p, "p of " + what);
      expect_bitwise(q.dm.download(&gm), q.m, "exp_avg of " + what);
      expect_bitwise(q.dv.download(&gv), q.v, "exp_avg_sq of " + what);
      EXPECT_TRUE(gp && gm && gv) << "the kernel wrote outside " << what;
    }
  }
  CUDA_OK(cudaStreamDestroy(stream));
}

// 6 sizes x {f32, bf16} x {aligned, unaligned} x {decay, no decay} = 48 tensors, plus 11 more (an empty
// one, and the tail that makes the call span two launches).
std::vector<Spec> odd_specs() {
  std::vector<Spec> specs;
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1000}, int64_t{65537}, int64_t{8193}, int64_t{3}}) {
    for (bool bf16 : {false, true}) {
      for (bool unaligned : {false, true}) {
        for (double wd : {0.0, 0.1}) {
          Spec s{n, bf16, wd};
          if (unaligned) {
            s.off_p = 1;
            s.off_m = 2;
            s.off_v = 3;
            s.off_g = 1;
          }
          specs.push_back(s);
        }
      }
    }
  }
  specs.push_back(Spec{0, false, 0.1});
  for (int64_t k = 0; k < 10; ++k) {
    Spec s{1 + 97 * k, k % 2 == 1, k % 3 == 0 ? 0.0 : 0.01};
    s.off_g = k % 4;  // only the gradient unaligned, or nothing
    specs.push_back(s);
  }
  return specs;
}

std::vector<std::unique_ptr<Param>> make_params(const std::vector<Spec>& specs, uint64_t seed) {
  std::vector<std::unique_ptr<Param>> params;
  for (size_t k = 0; k < specs.size(); ++k) {
    auto q = std::make_unique<Param>(specs[k], seed + 17 * k);
    q->h.lr = 1e-3 * static_cast<double>(1 + k % 5);  // per-tensor lr (lr_scale of a group)
    q->h.weight_decay = specs[k].weight_decay;
    q->h.beta2 = 0.999;
    q->h.eps = 1e-8;
    q->steps = static_cast<int64_t>(k % 3);  // per-tensor step: these start at step 1, 2 or 3
    params.push_back(std::move(q));
  }
  return params;
}

std::vector<Param*> raw(const std::vector<std::unique_ptr<Param>>& params) {
  std::vector<Param*> out;
  for (const auto& q : params) out.push_back(q.get());
  return out;
}

TEST(CudaAdamw, FusedStepMatchesCpuBitwise) {
  SKIP_WITHOUT_GPU();
  static_assert(adamw::cuda::kMaxTensorsPerLaunch < 59, "the specs must span more than one launch");
  for (double grad_scale : {1.0, 0.37}) {
    SCOPED_TRACE("grad_scale " + std::to_string(grad_scale));
    auto params = make_params(odd_specs(), 11);
    auto ptrs = raw(params);
    run_and_compare(ptrs, 0.9, grad_scale, 3, 101);
  }
}

// beta1 < 0.5 makes w = 1 - beta1 >= 0.5: torch's lerp takes its other form, and so must the kernel.
TEST(CudaAdamw, OtherLerpFormMatchesCpuBitwise) {
  SKIP_WITHOUT_GPU();
  auto params = make_params(odd_specs(), 23);
  auto ptrs = raw(params);
  run_and_compare(ptrs, 0.3, 0.5, 3, 202);
}

// Hundreds of small tensors (LoRA-like): many launches in one call.
TEST(CudaAdamw, ManySmallTensorsMatchCpuBitwise) {
  SKIP_WITHOUT_GPU();
  std::vector<Spec> specs;
  for (int64_t k = 0; k < 200; ++k) {
    Spec s{1 + (k * 37) % 300, k % 3 == 0, k % 2 == 0 ? 0.0 : 0.05};
    s.off_p = s.off_m = s.off_v = (k % 5 == 0) ? 1 : 0;
    specs.push_back(s);
  }
  auto params = make_params(specs, 31);
  auto ptrs = raw(params);
  run_and_compare(ptrs, 0.9, 1.0, 3, 303);
}

// Two runs from the same state on one large tensor (many chunks per block in the grid-stride loop) and a
// small one give the same bits.
TEST(CudaAdamw, BitwiseRepeatable) {
  SKIP_WITHOUT_GPU();
  std::vector<std::vector<float>> results;
  for (int run = 0; run < 2; ++run) {
    std::vector<Spec> specs = {Spec{(int64_t{1} << 24) + 3, false, 0.1}, Spec{1001, true, 0.0, 1, 1, 1, 1}};
    auto params = make_params(specs, 41);
    auto ptrs = raw(params);
    run_and_compare(ptrs, 0.9, 0.8, 2, 404);
    std::vector<float> all;
    for (Param* q : ptrs) {
      bool guards = false;
      for (const auto* arr : {&q->dp, &q->dm, &q->dv}) {
        const auto d = arr->download(&guards);
        EXPECT_TRUE(guards);
        all.insert(all.end(), d.begin(), d.end());
      }
    }
    results.push_back(std::move(all));
  }
  ASSERT_EQ(results[0].size(), results[1].size());
  EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)), 0);
}

// Argument checks happen before anything is launched, so they need no GPU.
TEST(CudaAdamw, RejectsBadArgumentsBeforeLaunching) {
  adamw::cuda::SharedArgs shared;
  EXPECT_EQ(adamw::cuda::fused_step(nullptr, nullptr, -1, shared), cudaErrorInvalidValue);
  EXPECT_EQ(adamw::cuda::fused_step(nullptr, nullptr, 1, shared), cudaErrorInvalidValue);
  EXPECT_EQ(adamw::cuda::fused_step(nullptr, nullptr, 0, shared), cudaSuccess);
  adamw::cuda::TensorArgs t;
  t.n = 5;  // null pointers with elements to step
  EXPECT_EQ(adamw::cuda::fused_step(nullptr, &t, 1, shared), cudaErrorInvalidValue);
  t.n = -1;
  EXPECT_EQ(adamw::cuda::fused_step(nullptr, &t, 1, shared), cudaErrorInvalidValue);
  t.n = 0;  // nothing to step: accepted, nothing launched
  EXPECT_EQ(adamw::cuda::fused_step(nullptr, &t, 1, shared), cudaSuccess);
  float x = 0.0f;
  t = adamw::cuda::TensorArgs{};
  t.p = t.m = t.v = &x;
  t.g = &x;
  t.n = 1;
  t.g_type = static_cast<adamw::cuda::GradType>(7);
  EXPECT_EQ(adamw::cuda::fused_step(nullptr, &t, 1, shared), cudaErrorInvalidValue);
}

}  // namespace
