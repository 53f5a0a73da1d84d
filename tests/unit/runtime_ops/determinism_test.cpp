// Determinism: the kernels partition work independently of the thread count and combine partials in a fixed
// order, so forward and backward results are bitwise identical run to run and between 1 and 4 threads.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/runtime/ops/linear_cross_entropy.hpp"
#include "engine/runtime/ops/ops.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

// A small llama-shaped block's forward and backward through the multi-threaded ops; returns every output and
// gradient.
std::vector<Tensor> block_results(Device& dev) {
  const int64_t B = 2, T = 37, Hq = 6, Hkv = 2, D = 10, C = Hq * D, V = 301;
  auto on = [&](const Tensor& t) { return t.to_device(dev); };
  Tensor x = on(random_tensor({B, T, C}, ENG_F32, 1)), wn = on(random_tensor({C}, ENG_F32, 2));
  Tensor q = on(random_tensor({B, T, Hq, D}, ENG_F32, 3)), k = on(random_tensor({B, T, Hkv, D}, ENG_F32, 4)),
         v = on(random_tensor({B, T, Hkv, D}, ENG_F32, 5));
  Tensor seg = on(random_ints({B, T}, 6, 0, 2));
  Tensor wl = on(random_tensor({V, C}, ENG_F32, 7)), labels = on(random_ints({B * T}, 8, -1, V - 1));
  Tensor ids = on(random_ints({B, T}, 9, 0, V - 1));
  std::vector<Tensor> r;
  auto grad_of = [&](Node& n, const std::vector<Tensor>& in, const std::vector<bool>& need) {
    std::vector<Tensor> outs = n.forward(in, true);
    std::vector<Tensor> g;
    for (const Tensor& o : outs) g.push_back(on(random_tensor(o.shape(), ENG_F32, 77)));
    for (const Tensor& o : outs) r.push_back(o);
    for (const Tensor& t : n.backward(g, need))
      if (t.defined()) r.push_back(t);
  };
  grad_of(*ops::make_rms_norm(1e-6), {x, wn}, {true, true});
  grad_of(*ops::make_attention(0.3), {q, k, v, seg}, {true, true, true, false});
  grad_of(*ops::make_linear_cross_entropy_chunked(-1, 0.01, 16), {x.view({B * T, C}), wl, labels},
          {true, true, false});
  grad_of(*ops::make_embedding(), {wl, ids}, {true, false});
  grad_of(*ops::make_linear(), {x, wl, Tensor()}, {true, true, false});
  grad_of(*ops::make_sum(), {x}, {true});
  return r;
}

TEST(Determinism, BitwiseEqualRunToRunAndAcrossThreadCounts) {
  CpuDevice four(4), one(1);
  const auto a = block_results(four), b = block_results(four), c = block_results(one);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), c.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(a[i], b[i])) << "result " << i << " differs between two runs";
    EXPECT_TRUE(bitwise_equal(a[i], c[i])) << "result " << i << " differs between 4 threads and 1";
  }
}

}  // namespace
}  // namespace engine::rt
