// engine/runtime/param_init.cpp: any range of a parameter's initial value, produced on its own, equals that
// range of the whole value, and the whole value is what ParamStore materialises.
#include "engine/runtime/param_init.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/runtime/device.hpp"
#include "engine/runtime/param_store.hpp"
#include "engine/runtime/rng.hpp"

namespace {

using engine::rt::Dims;
using engine::rt::ParamDecl;

ParamDecl decl(const char* name, std::vector<int64_t> shape, eng_init_kind init, double arg) {
  ParamDecl d;
  d.name = name;
  d.shape = Dims::from(shape);
  d.init = init;
  d.init_arg = arg;
  return d;
}

std::vector<double> values(const ParamDecl& d, uint64_t seed, int64_t offset, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n), -7.0);
  engine::rt::initial_values(d, seed, offset, v);
  return v;
}

TEST(Rng, SkipEqualsDrawing) {
  engine::rt::Rng a(123), b(123);
  for (int i = 0; i < 37; ++i) a.next_u64();
  b.skip(37);
  EXPECT_EQ(a.next_u64(), b.next_u64());
}

TEST(ParamInit, EveryRangeEqualsThatRangeOfTheWholeValue) {
  // odd sizes, so Box-Muller pairs straddle range edges and the last pair is half used
  for (const ParamDecl& d :
       {decl("w.normal", {7, 5}, ENG_INIT_NORMAL, 0.02), decl("w.uniform", {33}, ENG_INIT_UNIFORM, 0.5),
        decl("w.kaiming", {3, 11}, ENG_INIT_KAIMING_UNIFORM, 5.0), decl("n.ones", {9}, ENG_INIT_ONES, 0.0),
        decl("b.zeros", {9}, ENG_INIT_ZEROS, 0.0)}) {
    const int64_t n = d.shape.numel();
    const std::vector<double> whole = values(d, 42, 0, n);
    for (int64_t offset = 0; offset < n; ++offset) {
      for (int64_t len : {int64_t{1}, int64_t{2}, int64_t{3}, n - offset}) {
        if (offset + len > n) continue;
        const std::vector<double> part = values(d, 42, offset, len);
        for (int64_t i = 0; i < len; ++i)
          ASSERT_EQ(part[static_cast<size_t>(i)], whole[static_cast<size_t>(offset + i)])
              << d.name << " offset " << offset << " length " << len << " element " << i;
      }
    }
    if (d.init == ENG_INIT_NORMAL || d.init == ENG_INIT_UNIFORM) {
      EXPECT_NE(whole, values(d, 43, 0, n)) << "another seed gives other values";
      ParamDecl other = d;
      other.name += "2";
      EXPECT_NE(whole, values(other, 42, 0, n)) << "another name gives another stream";
    }
  }
  const ParamDecl d = decl("w", {4}, ENG_INIT_NORMAL, 1.0);
  std::vector<double> past(3);
  EXPECT_THROW(engine::rt::initial_values(d, 0, 2, past), engine::Error) << "a range past the end";
}

TEST(ParamInit, TheStoreMaterialisesTheSameValues) {
  engine::rt::CpuDevice cpu;
  engine::rt::ParamStore store(cpu, 9);
  ParamDecl d = decl("model.layers.0.mlp.up_proj.weight", {13, 7}, ENG_INIT_NORMAL, 0.02);
  d.flags = ENG_PARAM_TRAINABLE;
  engine::rt::Param& p = store.declare(d);
  const engine::rt::Tensor& v = store.value(p);
  ASSERT_EQ(v.dtype(), ENG_F32);
  std::vector<float> got(91);
  v.copy_to_host(got.data(), got.size() * sizeof(float));
  const std::vector<double> want = values(d, 9, 0, 91);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], static_cast<float>(want[i])) << i;
}

}  // namespace
