// The ABI 1.1 elementwise math (engine/runtime/ops/unary.cpp, elementwise.cpp, foreach.cpp over
// kernels/cpu/pointwise.cpp): every op's forward against a scalar reference written here, backward against
// central finite differences in fp64, numpy broadcasting (both operands broadcast, scalars, the generic and
// the fast reductions of the backward), refusals naming both shapes, and the multi-tensor updates.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "engine/runtime/ops/ops.hpp"
#include "op_test_support.hpp"

namespace engine::rt {
namespace {

using namespace testing;

std::vector<double> run1(Node& n, const std::vector<Tensor>& in) { return values(n.forward(in, false)[0]); }

Tensor positive(const Dims& shape, uint64_t seed) {  // in [0.05, 1.5]
  std::vector<double> v = values(random_tensor(shape, ENG_F64, seed, 1.5));
  for (double& x : v) x = std::fabs(x);
  return Tensor::from_vector(shape, ENG_F64, cpu_device(), v);
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

struct UnaryCase {
  const char* name;
  UnaryOp op;
  double p0, p1;
  bool positive_input;
  double (*ref)(double, double, double);
};

const UnaryCase kUnary[] = {
    {"sqrt", UnaryOp::Sqrt, 0, 0, true, [](double x, double, double) { return std::sqrt(x); }},
    {"rsqrt", UnaryOp::Rsqrt, 0, 0, true, [](double x, double, double) { return 1.0 / std::sqrt(x); }},
    {"abs", UnaryOp::Abs, 0, 0, false, [](double x, double, double) { return std::fabs(x); }},
    {"sign", UnaryOp::Sign, 0, 0, false, [](double x, double, double) { return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0; }},
    {"pow 2.5", UnaryOp::PowScalar, 2.5, 0, true, [](double x, double p, double) { return std::pow(x, p); }},
    {"pow -1", UnaryOp::PowScalar, -1.0, 0, false, [](double x, double p, double) { return std::pow(x, p); }},
    {"pow 3", UnaryOp::PowScalar, 3.0, 0, false, [](double x, double p, double) { return std::pow(x, p); }},
    {"clamp", UnaryOp::Clamp, -0.4, 0.55, false,
     [](double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }},
};

TEST(Unary, ForwardMatchesTheScalarReferenceInF64AndF32) {
  for (const UnaryCase& c : kUnary) {
    SCOPED_TRACE(c.name);
    Tensor x = c.positive_input ? positive({6, 7}, 21) : random_tensor({6, 7}, ENG_F64, 22, 2.0);
    const auto xv = values(x);
    const auto y = run1(*ops::make_unary(c.op, c.p0, c.p1), {x});
    for (size_t i = 0; i < xv.size(); ++i) EXPECT_NEAR(y[i], c.ref(xv[i], c.p0, c.p1), 1e-14 * (1 + std::fabs(y[i])));
    Tensor y32 = ops::make_unary(c.op, c.p0, c.p1)->forward({x.to(ENG_F32)}, false)[0];
    EXPECT_EQ(y32.dtype(), ENG_F32);
    expect_close(values(y32), y, 1e-6, 1e-6, c.name);
    // bf16 input computes in f32 on the CPU
    EXPECT_EQ(ops::make_unary(c.op, c.p0, c.p1)->forward({x.to(ENG_BF16)}, false)[0].dtype(), ENG_F32);
  }
}

TEST(Unary, GradientsMatchFiniteDifferences) {
  for (const UnaryCase& c : kUnary) {
    SCOPED_TRACE(c.name);
    Tensor x = c.positive_input ? positive({4, 5}, 23) : random_tensor({4, 5}, ENG_F64, 24, 2.0);
    expect_gradients_match([&] { return ops::make_unary(c.op, c.p0, c.p1); }, {x}, {true}, 1e-6, 1e-8);
  }
  // sign's gradient is zero everywhere (and defined)
  auto node = ops::make_unary(UnaryOp::Sign);
  node->forward({random_tensor({3, 3}, ENG_F64, 25)}, true);
  for (double g : values(node->backward({random_tensor({3, 3}, ENG_F64, 26)}, {true})[0])) EXPECT_EQ(g, 0.0);
}

TEST(Unary, SpecialValues) {
  Tensor x = Tensor::from_vector({5}, ENG_F64, cpu_device(), std::vector<double>{0.0, -0.0, -2.0, NAN, INFINITY});
  const auto s = run1(*ops::make_unary(UnaryOp::Sign), {x});
  EXPECT_EQ(s[0], 0.0);
  EXPECT_EQ(s[2], -1.0);
  EXPECT_TRUE(std::isnan(s[3]));
  EXPECT_EQ(s[4], 1.0);
  const auto cl = run1(*ops::make_unary(UnaryOp::Clamp, -1.0, 1.0), {x});
  EXPECT_EQ(cl[2], -1.0);
  EXPECT_TRUE(std::isnan(cl[3]));  // NaN is not clamped away
  EXPECT_EQ(cl[4], 1.0);
  EXPECT_TRUE(std::isnan(run1(*ops::make_unary(UnaryOp::Sqrt), {x})[2]));
  EXPECT_TRUE(std::isnan(run1(*ops::make_unary(UnaryOp::PowScalar, 0.5), {x})[2]));  // as std::pow
  EXPECT_EQ(run1(*ops::make_unary(UnaryOp::PowScalar, 2.0), {x})[2], 4.0);
  EXPECT_NE(message_of([] { ops::make_unary(UnaryOp::Clamp, 1.0, -1.0); }).find("lo 1 must not exceed hi -1"),
            std::string::npos);
  EXPECT_NE(message_of([] { ops::make_unary(UnaryOp::PowScalar, INFINITY); }).find("not finite"), std::string::npos);
}

struct BinaryCase {
  const char* name;
  BinaryOp op;
  double (*ref)(double, double);
};

const BinaryCase kBinary[] = {
    {"add", BinaryOp::Add, [](double a, double b) { return a + b; }},
    {"mul", BinaryOp::Mul, [](double a, double b) { return a * b; }},
    {"div", BinaryOp::Div, [](double a, double b) { return a / b; }},
    {"maximum", BinaryOp::Maximum, [](double a, double b) { return a > b ? a : b; }},
    {"minimum", BinaryOp::Minimum, [](double a, double b) { return a < b ? a : b; }},
};

// (3, 1, 5) with (4, 1) -> (3, 4, 5): both operands broadcast
TEST(Binary, BroadcastForwardMatchesLoopsForEveryOp) {
  Tensor a = random_tensor({3, 1, 5}, ENG_F64, 31), b = random_tensor({4, 1}, ENG_F64, 32);
  const auto av = values(a), bv = values(b);
  for (const BinaryCase& c : kBinary) {
    SCOPED_TRACE(c.name);
    Tensor y = ops::make_binary(c.op)->forward({a, b}, false)[0];
    ASSERT_EQ(y.shape(), (Dims{3, 4, 5}));
    const auto yv = values(y);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 5; ++k)
          EXPECT_DOUBLE_EQ(yv[static_cast<size_t>((i * 4 + j) * 5 + k)], c.ref(av[static_cast<size_t>(i * 5 + k)], bv[static_cast<size_t>(j)]));
    // swapped operands, a scalar, and the same shape
    Tensor ys = ops::make_binary(c.op)->forward({b, a}, false)[0];
    EXPECT_EQ(ys.shape(), (Dims{3, 4, 5}));
    Tensor s = Tensor::from_vector(Dims{}, ENG_F64, cpu_device(), std::vector<double>{0.3});
    const auto ysc = run1(*ops::make_binary(c.op), {a, s});
    for (size_t i = 0; i < av.size(); ++i) EXPECT_DOUBLE_EQ(ysc[i], c.ref(av[i], 0.3));
    const auto ysame = run1(*ops::make_binary(c.op), {a, a});
    for (size_t i = 0; i < av.size(); ++i) EXPECT_DOUBLE_EQ(ysame[i], c.ref(av[i], av[i]));
    expect_close(run1(*ops::make_binary(c.op), {a.to(ENG_F32), b.to(ENG_F32)}), values(y), 1e-6, 1e-6, c.name);
  }
}

TEST(Binary, GradientsWithBroadcastingMatchFiniteDifferences) {
  // every reduction path of the backward: generic (3,1,5) and (4,1) in (3,4,5), trailing (5), scalar (), none
  const std::vector<std::pair<Dims, Dims>> shapes = {
      {{3, 1, 5}, {4, 1}}, {{2, 3, 5}, {5}}, {{2, 3}, {}}, {{1, 3}, {2, 1}}, {{2, 4}, {2, 4}}, {{4}, {3, 1, 4}}};
  uint64_t seed = 40;
  for (const BinaryCase& c : kBinary) {
    for (const auto& [sa, sb] : shapes) {
      SCOPED_TRACE(std::string(c.name) + " " + sa.str() + " " + sb.str());
      Tensor a = random_tensor(sa, ENG_F64, seed++), b = random_tensor(sb, ENG_F64, seed++);
      expect_gradients_match([&] { return ops::make_binary(c.op); }, {a, b}, {true, true}, 1e-6, 1e-8);
    }
  }
}

TEST(Binary, MaximumAndMinimumSplitTheGradientAtATie) {
  Tensor a = Tensor::from_vector({3}, ENG_F64, cpu_device(), std::vector<double>{1.0, 2.0, 3.0});
  Tensor b = Tensor::from_vector({3}, ENG_F64, cpu_device(), std::vector<double>{2.0, 2.0, 1.0});
  Tensor dy = Tensor::from_vector({3}, ENG_F64, cpu_device(), std::vector<double>{10.0, 10.0, 10.0});
  for (BinaryOp op : {BinaryOp::Maximum, BinaryOp::Minimum}) {
    auto node = ops::make_binary(op);
    node->forward({a, b}, true);
    const auto g = node->backward({dy}, {true, true});
    const bool mx = op == BinaryOp::Maximum;
    EXPECT_EQ(values(g[0]), (std::vector<double>{mx ? 0.0 : 10.0, 5.0, mx ? 10.0 : 0.0}));
    EXPECT_EQ(values(g[1]), (std::vector<double>{mx ? 10.0 : 0.0, 5.0, mx ? 0.0 : 10.0}));
  }
  Tensor n = Tensor::from_vector({2}, ENG_F64, cpu_device(), std::vector<double>{NAN, 1.0});
  Tensor m = Tensor::from_vector({2}, ENG_F64, cpu_device(), std::vector<double>{0.0, NAN});
  for (double v : run1(*ops::make_binary(BinaryOp::Maximum), {n, m})) EXPECT_TRUE(std::isnan(v));
}

TEST(Binary, ShapesThatDoNotBroadcastAreRefusedNamingBoth) {
  Tensor a = random_tensor({3, 5}, ENG_F32, 51), b = random_tensor({4, 5}, ENG_F32, 52);
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum, BinaryOp::Minimum}) {
    const std::string m = message_of([&] { ops::make_binary(op)->forward({a, b}, false); });
    EXPECT_NE(m.find("(3, 5)"), std::string::npos) << m;
    EXPECT_NE(m.find("(4, 5)"), std::string::npos) << m;
    EXPECT_NE(m.find("do not broadcast"), std::string::npos) << m;
  }
  const std::string w = message_of([&] {
    ops::make_where()->forward({random_tensor({2, 5}, ENG_F32, 53), a, random_tensor({5}, ENG_F32, 54)}, false);
  });
  EXPECT_NE(w.find("(2, 5)"), std::string::npos) << w;
  EXPECT_NE(w.find("(3, 5)"), std::string::npos) << w;
}

TEST(Where, BroadcastForwardAndGradients) {
  // cond (3, 1) int32 (0 / nonzero), a (3, 4), b (4) -> (3, 4)
  Tensor cond = Tensor::from_vector({3, 1}, ENG_I32, cpu_device(), std::vector<int32_t>{1, 0, 7});
  Tensor a = random_tensor({3, 4}, ENG_F64, 61), b = random_tensor({4}, ENG_F64, 62);
  const auto av = values(a), bv = values(b);
  const auto y = run1(*ops::make_where(), {cond, a, b});
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      EXPECT_EQ(y[static_cast<size_t>(i * 4 + j)], i != 1 ? av[static_cast<size_t>(i * 4 + j)] : bv[static_cast<size_t>(j)]);
  expect_gradients_match([] { return ops::make_where(); }, {cond, a, b}, {false, true, true});
  // a floating condition (nonzero is true), and bool
  Tensor fc = Tensor::from_vector({3, 1}, ENG_F32, cpu_device(), std::vector<float>{0.5f, 0.0f, -1.0f});
  EXPECT_EQ(run1(*ops::make_where(), {fc, a.to(ENG_F32), b.to(ENG_F32)}),
            run1(*ops::make_where(), {cond, a.to(ENG_F32), b.to(ENG_F32)}));
  Tensor bc = Tensor::from_vector({3, 1}, ENG_BOOL, cpu_device(), std::vector<uint8_t>{1, 0, 1});
  EXPECT_EQ(run1(*ops::make_where(), {bc, a, b}), y);
}

// ---- foreach ------------------------------------------------------------------------------------------------

struct ForeachCase {
  const char* name;
  ForeachArgs args;
  bool y;
  double (*ref)(const ForeachArgs&, double, double, double);
};

ForeachArgs args_of(ForeachOp op, double a, double b, double c, double d, double eps, bool sqrt_y) {
  ForeachArgs f;
  f.op = op;
  f.a = a;
  f.b = b;
  f.c = c;
  f.d = d;
  f.eps = eps;
  f.sqrt_y = sqrt_y;
  return f;
}

double sgn(double v) { return v > 0 ? 1.0 : v < 0 ? -1.0 : 0.0; }

TEST(Foreach, EveryUpdateMatchesTheScalarReferenceOverSeveralTensors) {
  const std::vector<ForeachCase> cases = {
      {"axpby", args_of(ForeachOp::Axpby, 0.9, -0.3, 0, 0, 0, false), false,
       [](const ForeachArgs& f, double d, double x, double) { return f.a * d + f.b * x; }},
      {"addcmul", args_of(ForeachOp::Addcmul, 0.99, 0, 0.01, 0, 0, false), true,
       [](const ForeachArgs& f, double d, double x, double y) { return f.a * d + f.c * x * y; }},
      {"addcdiv sqrt", args_of(ForeachOp::Addcdiv, 0.999, 0, -0.01, 1.25, 1e-8, true), true,
       [](const ForeachArgs& f, double d, double x, double y) {
         return f.a * d + f.c * x / (std::sqrt(f.d * y) + f.eps);
       }},
      {"addcdiv", args_of(ForeachOp::Addcdiv, 1.0, 0, 0.5, 2.0, 0.1, false), true,
       [](const ForeachArgs& f, double d, double x, double y) { return f.a * d + f.c * x / (f.d * y + f.eps); }},
      {"add_sign", args_of(ForeachOp::AddSign, 0.98, 0.9, -0.01, 0.1, 0, false), true,
       [](const ForeachArgs& f, double d, double x, double y) { return f.a * d + f.c * sgn(f.b * x + f.d * y); }},
      {"add_sign without y", args_of(ForeachOp::AddSign, 1.0, -1.0, 0.5, 0, 0, false), false,
       [](const ForeachArgs& f, double d, double x, double) { return f.a * d + f.c * sgn(f.b * x); }},
  };
  const std::vector<Dims> shapes = {{5, 7}, {3}, {2, 2, 9}, {0}};
  for (const ForeachCase& c : cases) {
    for (DType dt : {ENG_F64, ENG_F32}) {
      SCOPED_TRACE(std::string(c.name) + (dt == ENG_F32 ? " f32" : " f64"));
      std::vector<Tensor> dst, x, y;
      std::vector<std::vector<double>> d0, x0, y0;
      uint64_t seed = 70;
      for (const Dims& s : shapes) {
        dst.push_back(random_tensor(s, dt, seed++));
        // x from bf16 on one entry and strided on another: sources are converted
        Tensor xs = random_tensor(s, dt, seed++);
        if (s.ndim == 2) xs = random_tensor({s[1], s[0]}, dt, seed++).transposed(0, 1);
        x.push_back(s.ndim == 1 && s[0] == 3 ? xs.to(ENG_BF16) : xs);
        y.push_back(positive(s, seed++).to(dt));
        d0.push_back(values(dst.back()));
        x0.push_back(values(x.back()));
        y0.push_back(values(y.back()));
      }
      ops::foreach_update("test", c.args, dst, x, c.y ? y : std::vector<Tensor>{});
      for (size_t t = 0; t < dst.size(); ++t) {
        const auto got = values(dst[t]);
        for (size_t i = 0; i < got.size(); ++i) {
          const double want = c.ref(c.args, d0[t][i], x0[t][i], c.y ? y0[t][i] : 0.0);
          EXPECT_NEAR(got[i], want, (dt == ENG_F64 ? 1e-14 : 1e-6) * (1 + std::fabs(want))) << "tensor " << t;
        }
      }
    }
  }
}

TEST(Foreach, MismatchedListsAndShapesAreRefusedBeforeAnythingChanges) {
  std::vector<Tensor> dst = {random_tensor({4}, ENG_F32, 81), random_tensor({2, 3}, ENG_F32, 82)};
  const auto before = values(dst[0]);
  std::vector<Tensor> one = {random_tensor({4}, ENG_F32, 83)};
  ForeachArgs axpby = args_of(ForeachOp::Axpby, 1, 1, 0, 0, 0, false);
  ForeachArgs addcmul = args_of(ForeachOp::Addcmul, 1, 0, 1, 0, 0, false);
  std::string m = message_of([&] { ops::foreach_update("foreach_axpby_", axpby, dst, one, {}); });
  EXPECT_NE(m.find("foreach_axpby_: the lists differ in length: dst has 2 tensors, x has 1"), std::string::npos) << m;
  std::vector<Tensor> two = {random_tensor({4}, ENG_F32, 84), random_tensor({2, 3}, ENG_F32, 85)};
  m = message_of([&] { ops::foreach_update("foreach_addcmul_", addcmul, dst, two, one); });
  EXPECT_NE(m.find("dst has 2 tensors, y has 1"), std::string::npos) << m;
  std::vector<Tensor> wrong = {random_tensor({4}, ENG_F32, 86), random_tensor({3, 2}, ENG_F32, 87)};
  m = message_of([&] { ops::foreach_update("foreach_axpby_", axpby, dst, wrong, {}); });
  EXPECT_NE(m.find("x[1] f32 (3, 2) cpu does not have the shape of dst[1] f32 (2, 3) cpu"), std::string::npos) << m;
  EXPECT_EQ(values(dst[0]), before) << "dst[0] changed although the call was refused";
  std::vector<Tensor> strided = {random_tensor({3, 2}, ENG_F32, 88).transposed(0, 1)};
  m = message_of([&] { ops::foreach_update("foreach_axpby_", axpby, strided, {random_tensor({2, 3}, ENG_F32, 89)}, {}); });
  EXPECT_NE(m.find("must be contiguous"), std::string::npos) << m;
  std::vector<Tensor> mixed = {random_tensor({4}, ENG_F32, 90), random_tensor({4}, ENG_F64, 91)};
  m = message_of([&] { ops::foreach_update("foreach_axpby_", axpby, mixed, mixed, {}); });
  EXPECT_NE(m.find("differ in dtype"), std::string::npos) << m;
}

}  // namespace
}  // namespace engine::rt
