// kernels/cuda/embedding.cu against kernels/cpu/embedding.hpp: the forward gather (float, double and bf16
// rows copied bit for bit; invalid ids give zero rows), the backward with many repeated ids (float bitwise
// equal to the CPU, which adds in token order too; bf16 within bf16 tolerance; both bitwise identical across
// two runs; unused ids zero), and the id check written on the device.
#include "kernels/cuda/embedding.cuh"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/embedding.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace {

using engine::cuda_test::DeviceBuffer;
using engine::cuda_test::from_bf16;
using engine::cuda_test::random_values;
using engine::cuda_test::rel_error;
using engine::cuda_test::round_to_bf16;
using engine::cuda_test::to_bf16;

// N ids in [0, V), heavily repeated: a third of the tokens share a handful of ids.
std::vector<int32_t> make_ids(int64_t N, int64_t V, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_int_distribution<int64_t> any(0, V - 1), few(0, std::min<int64_t>(V - 1, 4));
  std::vector<int32_t> ids(N);
  for (int64_t n = 0; n < N; ++n) ids[n] = static_cast<int32_t>(n % 3 == 0 ? few(gen) : any(gen));
  return ids;
}

struct Shape {
  int64_t N, V, C;
};
const Shape kShapes[] = {{1, 1, 1}, {7, 3, 5}, {3000, 50, 96}, {2048, 1000, 257}, {512, 20000, 64}};

TEST(CudaEmbedding, ForwardGathersRowsAsStored) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (const Shape& s : kShapes) {
    const auto table = random_values(s.V * s.C, 1);
    const auto ids = make_ids(s.N, s.V, 2);
    std::vector<float> want(s.N * s.C);
    engine::cpu::embedding_forward<float>(pool, table.data(), ids.data(), s.N, s.C, want.data());
    DeviceBuffer<float> gt(table), out(s.N * s.C);
    DeviceBuffer<int32_t> gi(ids);
    engine::cuda::embedding_forward<float>(nullptr, gt.get(), gi.get(), s.N, s.V, s.C, out.get());
    EXPECT_EQ(out.download(), want) << s.N << " " << s.V << " " << s.C;

    std::vector<double> td(table.begin(), table.end()), wd(want.begin(), want.end());
    DeviceBuffer<double> gtd(td), outd(s.N * s.C);
    engine::cuda::embedding_forward<double>(nullptr, gtd.get(), gi.get(), s.N, s.V, s.C, outd.get());
    EXPECT_EQ(outd.download(), wd);

    DeviceBuffer<__nv_bfloat16> gtb(to_bf16(table)), outb(s.N * s.C);
    engine::cuda::embedding_forward<__nv_bfloat16>(nullptr, gtb.get(), gi.get(), s.N, s.V, s.C, outb.get());
    EXPECT_EQ(from_bf16(outb.download()), round_to_bf16(want));
  }
}

TEST(CudaEmbedding, ForwardInvalidIdGivesZeroRow) {
  SKIP_WITHOUT_GPU();
  const int64_t V = 10, C = 6;
  const auto table = random_values(V * C, 3);
  const std::vector<int32_t> ids{0, 10, -1, 9};
  DeviceBuffer<float> gt(table), out(4 * C);
  DeviceBuffer<int32_t> gi(ids);
  engine::cuda::embedding_forward<float>(nullptr, gt.get(), gi.get(), 4, V, C, out.get());
  const auto got = out.download();
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(got[0 * C + c], table[0 * C + c]);
    EXPECT_EQ(got[1 * C + c], 0.0f);
    EXPECT_EQ(got[2 * C + c], 0.0f);
    EXPECT_EQ(got[3 * C + c], table[9 * C + c]);
  }
}

template <typename T>
std::vector<T> run_backward(const std::vector<T>& grad_out, const std::vector<int32_t>& ids, const Shape& s) {
  DeviceBuffer<T> g(grad_out), table(s.V * s.C);  // table NaN-poisoned: every element must be written
  DeviceBuffer<int32_t> gi(ids);
  const size_t bytes = engine::cuda::embedding_backward_workspace_bytes(s.N);
  DeviceBuffer<unsigned char> ws(bytes);
  engine::cuda::embedding_backward<T>(nullptr, g.get(), gi.get(), s.N, s.V, s.C, table.get(), ws.get(),
                                      bytes);
  return table.download();
}

TEST(CudaEmbedding, BackwardDeterministicAndMatchesCpu) {
  SKIP_WITHOUT_GPU();
  engine::cpu::ThreadPool pool(2);
  for (const Shape& s : kShapes) {
    const auto grad_out = random_values(s.N * s.C, 4);
    const auto ids = make_ids(s.N, s.V, 5);
    std::vector<float> want(s.V * s.C);
    engine::cpu::embedding_backward<float>(pool, grad_out.data(), ids.data(), s.N, s.V, s.C, want.data());
    const auto got = run_backward<float>(grad_out, ids, s);
    EXPECT_EQ(got, want) << "same additions in token order as the CPU; " << s.N << " " << s.V << " " << s.C;
    EXPECT_EQ(run_backward<float>(grad_out, ids, s), got) << "second run differs";

    const auto gr = round_to_bf16(grad_out);
    engine::cpu::embedding_backward<float>(pool, gr.data(), ids.data(), s.N, s.V, s.C, want.data());
    const auto gotb = run_backward<__nv_bfloat16>(to_bf16(grad_out), ids, s);
    EXPECT_LE(rel_error(from_bf16(gotb), want), 1e-2);
    const auto again = run_backward<__nv_bfloat16>(to_bf16(grad_out), ids, s);
    EXPECT_EQ(std::memcmp(gotb.data(), again.data(), gotb.size() * sizeof(__nv_bfloat16)), 0)
        << "bf16 rerun differs";
  }
}

TEST(CudaEmbedding, BackwardSkipsInvalidIdsAndZerosUnused) {
  SKIP_WITHOUT_GPU();
  const Shape s{5, 4, 3};
  const std::vector<int32_t> ids{2, 7, 2, -3, 0};
  const auto grad_out = random_values(s.N * s.C, 6);
  const auto got = run_backward<float>(grad_out, ids, s);
  for (int64_t c = 0; c < s.C; ++c) {
    EXPECT_EQ(got[0 * s.C + c], grad_out[4 * s.C + c]);
    EXPECT_EQ(got[1 * s.C + c], 0.0f);
    EXPECT_EQ(got[2 * s.C + c], 0.0f + grad_out[0 * s.C + c] + grad_out[2 * s.C + c]);
    EXPECT_EQ(got[3 * s.C + c], 0.0f);
  }
}

TEST(CudaEmbedding, CheckIdsOnTheDevice) {
  SKIP_WITHOUT_GPU();
  auto first_bad = [](const std::vector<int32_t>& ids, int64_t vocab) {
    DeviceBuffer<int32_t> gi(ids);
    DeviceBuffer<int64_t> out(1);
    engine::cuda::embedding_check_ids(nullptr, gi.get(), static_cast<int64_t>(ids.size()), vocab, out.get());
    return out.download()[0];
  };
  std::vector<int32_t> ids = make_ids(100000, 500, 7);
  EXPECT_EQ(first_bad(ids, 500), -1);
  EXPECT_EQ(first_bad(ids, 500), engine::cpu::check_ids(ids.data(), 100000, 500));
  ids[77777] = 500;
  ids[90000] = -1;
  EXPECT_EQ(first_bad(ids, 500), 77777);
  ids[17] = -5;
  EXPECT_EQ(first_bad(ids, 500), 17);
  EXPECT_EQ(first_bad(ids, 500), engine::cpu::check_ids(ids.data(), 100000, 500));
  EXPECT_EQ(first_bad({}, 500), -1);
}

}  // namespace
