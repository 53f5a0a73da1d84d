// The multi-tensor updates (engine/runtime/ops/foreach.cpp over kernels/cuda/pointwise.cu) on CUDA against the
// same calls on the CPU: every ForeachOp, 150 tensors of mixed sizes (so several launches of up to 64 tensors,
// empty tensors skipped, one tensor of 300k elements spanning many blocks), f32 destinations with f32 and bf16
// sources, and bf16 destinations. f32: rel_error <= 1e-5; bf16 destinations: <= 1e-2 (one bf16 rounding of the
// result). The CUDA allocator poisons new memory with NaN bytes, so an element a kernel skips shows up.
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/runtime/device_select.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "engine/runtime/tensor.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace engine::rt {
namespace {

Device& gpu() {
  static Device* d = [] {
    setenv("ENGINE_CUDA_ALLOC_POISON", "1", 0);
    return &device_from_spec("cuda");
  }();
  return *d;
}

Tensor random_f32(int64_t n, uint64_t seed, bool positive) {
  auto v = cuda_test::random_values(static_cast<size_t>(n), seed, positive ? 0.01f : -1.0f, 1.0f);
  return Tensor::from_vector({n}, ENG_F32, cpu_device(), v);
}

ForeachArgs args_of(ForeachOp op) {
  ForeachArgs f;
  f.op = op;
  f.a = 0.95;
  f.b = 0.9;
  f.c = -0.01;
  f.d = 0.1;
  f.eps = 1e-6;
  f.sqrt_y = true;
  return f;
}

TEST(CudaForeach, EveryUpdateMatchesTheCpuOverManyTensors) {
  SKIP_WITHOUT_GPU();
  std::vector<int64_t> sizes;
  for (int i = 0; i < 150; ++i) sizes.push_back(i % 17 == 0 ? 0 : (i * 97) % 5000 + 1);
  sizes[3] = 300001;
  for (ForeachOp op : {ForeachOp::Axpby, ForeachOp::Addcmul, ForeachOp::Addcdiv, ForeachOp::AddSign}) {
    for (DType dst_dt : {ENG_F32, ENG_BF16}) {
      for (DType src_dt : {ENG_F32, ENG_BF16}) {
        SCOPED_TRACE("op " + std::to_string(static_cast<int>(op)) + " dst " + dtype_name(dst_dt) + " src " +
                     dtype_name(src_dt));
        const bool with_y = op != ForeachOp::Axpby;
        std::vector<Tensor> cd, cx, cy, gd, gx, gy;
        uint64_t seed = 1;
        for (int64_t n : sizes) {
          // The CPU sees the values the GPU computes with: rounded to bf16 where the GPU's copy is bf16, and the
          // sources converted to the destination's dtype as foreach_update does (the CPU's destinations here are
          // f32, so it would not round them itself; with a bf16 destination and f32 sources the GPU's b x + d y
          // comes from bf16 x and y, and AddSign near 0 takes the sign of that).
          Tensor d = random_f32(n, seed++, false).to(dst_dt).to(ENG_F32);
          Tensor x = random_f32(n, seed++, false).to(src_dt);
          Tensor y = random_f32(n, seed++, true).to(src_dt);
          cd.push_back(d.clone());
          cx.push_back(x.to(dst_dt).to(ENG_F32));
          cy.push_back(y.to(dst_dt).to(ENG_F32));
          gd.push_back(d.to(dst_dt).to_device(gpu()));
          gx.push_back(x.to_device(gpu()));
          gy.push_back(y.to_device(gpu()));
        }
        const ForeachArgs f = args_of(op);
        ops::foreach_update("test", f, cd, cx, with_y ? cy : std::vector<Tensor>{});
        ops::foreach_update("test", f, gd, gx, with_y ? gy : std::vector<Tensor>{});
        const double tol = dst_dt == ENG_F32 ? 1e-5 : 1e-2;
        for (size_t t = 0; t < sizes.size(); ++t) {
          if (sizes[t] == 0) continue;
          const double err = cuda_test::rel_error(gd[t].to_device(cpu_device()).to(ENG_F32).to_float_vector(),
                                                  cd[t].to_float_vector());
          ASSERT_LE(err, tol) << "tensor " << t << " of " << sizes[t] << " elements";
        }
      }
    }
  }
}

TEST(CudaForeach, F64IsRefusedWithAMessage) {
  SKIP_WITHOUT_GPU();
  std::vector<Tensor> d = {Tensor::zeros({4}, ENG_F64, gpu())};
  try {
    ops::foreach_update("foreach_axpby_", args_of(ForeachOp::Axpby), d, d, {});
    ADD_FAILURE() << "f64 foreach on CUDA was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("foreach_axpby_"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace engine::rt
