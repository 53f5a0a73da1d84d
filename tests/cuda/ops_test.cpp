// Every built-in op node, forward and backward, on CUDA against the same node on the CPU: the kernel table
// binding (engine/runtime/devices/cuda/cuda_kernel_table.cpp) and the kernels behind it, through the exact
// code path training uses. Inputs are random and never zero; the CUDA allocator poisons every new block with
// NaN bytes (ENGINE_CUDA_ALLOC_POISON=1, set below before the device exists), so an output a kernel fails to
// write shows up as NaN.
//
// f32 on CUDA is compared with f32 on the CPU: rel_error <= 1e-5 (cuda_test_support.hpp states the norm).
// bf16 on CUDA (bf16 storage, fp32 statistics) is compared with the CPU computing in f32 on the same
// bf16-rounded inputs: rel_error <= 2e-2 for outputs and gradients, the bf16 rounding of intermediate results
// (one 8-bit mantissa rounding per stored activation) being the expected difference; scalar losses <= 1e-2.
#include "engine/runtime/ops/ops.hpp"

#include <cstdlib>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "engine/runtime/device_select.hpp"
#include "engine/runtime/node.hpp"
#include "engine/runtime/tensor.hpp"
#include "tests/cuda/cuda_test_support.hpp"

namespace engine::rt {
namespace {

using cuda_test::rel_error;

Device& gpu() {
  static Device* d = [] {
    setenv("ENGINE_CUDA_ALLOC_POISON", "1", 0);
    return &device_from_spec("cuda");
  }();
  return *d;
}

Tensor random_f32(const Dims& shape, uint64_t seed, double scale = 1.0) {
  const auto v = cuda_test::random_values(static_cast<size_t>(shape.numel()), seed, -1.0f, 1.0f);
  std::vector<float> s(v.size());
  for (size_t i = 0; i < v.size(); ++i) s[i] = static_cast<float>(v[i] * scale);
  return Tensor::from_vector(shape, ENG_F32, cpu_device(), s);
}

Tensor ints(const Dims& shape, const std::vector<int32_t>& v) {
  return Tensor::from_vector(shape, ENG_I32, cpu_device(), v);
}

struct OpCase {
  std::string name;
  std::function<std::unique_ptr<Node>()> make;
  std::vector<Tensor> inputs;  // CPU; floating inputs f32
  std::vector<bool> needs_grad;
};

bool floating(const Tensor& t) { return t.defined() && dtype_is_float(t.dtype()); }

// The CPU value of t as the CUDA run sees it: rounded to bf16 when dt is bf16.
Tensor as_seen(const Tensor& t, DType dt) {
  if (!floating(t) || dt == ENG_F32) return t;
  return t.to(ENG_BF16).to(ENG_F32);
}

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  ASSERT_TRUE(got.defined()) << what << ": CUDA result undefined";
  ASSERT_TRUE(want.defined()) << what << ": CPU result undefined";
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const double err = rel_error(got.to_float_vector(), want.to_float_vector());
  EXPECT_LE(err, tol) << what << " (" << got.describe() << " vs " << want.describe() << ")";
}

void run_case(const OpCase& c, DType dt) {
  SCOPED_TRACE(c.name + (dt == ENG_BF16 ? " bf16" : " f32"));
  const double tol = dt == ENG_F32 ? 1e-5 : 2e-2;
  std::vector<Tensor> cpu_in, gpu_in;
  for (const Tensor& t : c.inputs) {
    cpu_in.push_back(as_seen(t, dt));
    gpu_in.push_back(!t.defined() ? Tensor() : floating(t) ? t.to(dt).to_device(gpu()) : t.to_device(gpu()));
  }
  auto cpu_node = c.make();
  auto gpu_node = c.make();
  const std::vector<Tensor> cpu_out = cpu_node->forward(cpu_in, true);
  const std::vector<Tensor> gpu_out = gpu_node->forward(gpu_in, true);
  ASSERT_EQ(cpu_out.size(), gpu_out.size());
  std::vector<Tensor> cpu_up, gpu_up;
  for (size_t i = 0; i < cpu_out.size(); ++i) {
    const double out_tol = cpu_out[i].numel() == 1 ? (dt == ENG_F32 ? 1e-5 : 1e-2) : tol;
    expect_close(gpu_out[i], cpu_out[i], out_tol, c.name + " output " + std::to_string(i));
    Tensor up = random_f32(cpu_out[i].shape(), 1000 + i);
    cpu_up.push_back(as_seen(up, gpu_out[i].dtype() == ENG_BF16 ? ENG_BF16 : ENG_F32));
    gpu_up.push_back(up.to(gpu_out[i].dtype()).to_device(gpu()));
  }
  const std::vector<Tensor> cpu_grads = cpu_node->backward(cpu_up, c.needs_grad);
  const std::vector<Tensor> gpu_grads = gpu_node->backward(gpu_up, c.needs_grad);
  for (size_t i = 0; i < c.needs_grad.size(); ++i) {
    if (!c.needs_grad[i]) continue;
    expect_close(gpu_grads[i], cpu_grads[i], tol, c.name + " gradient of input " + std::to_string(i));
  }
}

std::vector<OpCase> cases() {
  std::vector<OpCase> v;
  v.push_back({"linear",
               [] { return ops::make_linear(); },
               {random_f32({3, 37, 65}, 1), random_f32({129, 65}, 2), random_f32({129}, 3)},
               {true, true, true}});
  v.push_back({"linear no bias",
               [] { return ops::make_linear(); },
               {random_f32({2, 16, 64}, 4), random_f32({96, 64}, 5), Tensor()},
               {true, true, false}});
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      v.push_back(
          {"matmul " + std::to_string(ta) + std::to_string(tb),
           [=] { return ops::make_matmul(ta, tb); },
           {random_f32({3, ta ? 17 : 9, ta ? 9 : 17}, 6), random_f32({3, tb ? 11 : 17, tb ? 17 : 11}, 7)},
           {true, true}});
      v.push_back(
          {"matmul broadcast " + std::to_string(ta) + std::to_string(tb),
           [=] { return ops::make_matmul(ta, tb); },
           {random_f32({4, ta ? 17 : 9, ta ? 9 : 17}, 8), random_f32({tb ? 11 : 17, tb ? 17 : 11}, 9)},
           {true, true}});
    }
  v.push_back({"add",
               [] { return ops::make_add(); },
               {random_f32({5, 7, 33}, 10), random_f32({33}, 11)},
               {true, true}});
  v.push_back({"mul",
               [] { return ops::make_mul(); },
               {random_f32({5, 7, 33}, 12), random_f32({7, 33}, 13)},
               {true, true}});
  v.push_back({"scale", [] { return ops::make_scale(-1.75); }, {random_f32({1001}, 14)}, {true}});
  // ABI 1.1 elementwise math: numpy broadcasting of both operands (the generic kernels and reduce_to), the
  // same-shape and trailing fast paths, the unary functions (positive inputs where the function needs them)
  for (auto [name, op] : {std::pair{"div", BinaryOp::Div}, std::pair{"maximum", BinaryOp::Maximum},
                          std::pair{"minimum", BinaryOp::Minimum}, std::pair{"add", BinaryOp::Add},
                          std::pair{"mul", BinaryOp::Mul}}) {
    const BinaryOp o = op;
    v.push_back({std::string(name) + " broadcast (9,1,70) x (13,1)", [o] { return ops::make_binary(o); },
                 {random_f32({9, 1, 70}, 60), random_f32({13, 1}, 61)},
                 {true, true}});
    v.push_back({std::string(name) + " same shape", [o] { return ops::make_binary(o); },
                 {random_f32({7, 129}, 62), random_f32({7, 129}, 63)},
                 {true, true}});
    v.push_back({std::string(name) + " scalar", [o] { return ops::make_binary(o); },
                 {random_f32({3, 1000}, 64), random_f32({}, 65)},
                 {true, true}});
  }
  for (auto [name, op, p0, p1, pos] :
       {std::tuple{"sqrt", UnaryOp::Sqrt, 0.0, 0.0, true}, std::tuple{"rsqrt", UnaryOp::Rsqrt, 0.0, 0.0, true},
        std::tuple{"abs", UnaryOp::Abs, 0.0, 0.0, false}, std::tuple{"sign", UnaryOp::Sign, 0.0, 0.0, false},
        std::tuple{"pow 2.5", UnaryOp::PowScalar, 2.5, 0.0, true},
        std::tuple{"pow 3", UnaryOp::PowScalar, 3.0, 0.0, false},
        std::tuple{"clamp", UnaryOp::Clamp, -0.5, 0.5, false}}) {
    const UnaryOp o = op;
    const double a = p0, b = p1;
    Tensor x = random_f32({5, 2049}, 66);
    if (pos) x = ops::make_unary(UnaryOp::Abs)->forward({x}, false)[0];
    v.push_back({name, [o, a, b] { return ops::make_unary(o, a, b); }, {x}, {true}});
  }
  {
    std::vector<float> c(9 * 13);
    for (size_t i = 0; i < c.size(); ++i) c[i] = (i * 7) % 3 == 0 ? 0.0f : 1.0f;
    v.push_back({"where (9,13,1) ? (13,70) : (70)",
                 [] { return ops::make_where(); },
                 {Tensor::from_vector({9, 13, 1}, ENG_F32, cpu_device(), c), random_f32({13, 70}, 67),
                  random_f32({70}, 68)},
                 {false, true, true}});
  }

  v.push_back({"rms_norm",
               [] { return ops::make_rms_norm(1e-6); },
               {random_f32({2, 9, 896}, 15), random_f32({896}, 16)},
               {true, true}});
  for (uint32_t scaling : {ENG_ROPE_NONE, ENG_ROPE_LLAMA3}) {
    eng_rope_config cfg{};
    cfg.struct_size = sizeof(cfg);
    cfg.theta = scaling == ENG_ROPE_NONE ? 1e6 : 5e5;
    cfg.rotary_dim = 64;
    cfg.scaling = scaling;
    cfg.factor = 8.0;
    cfg.low_freq_factor = 1.0;
    cfg.high_freq_factor = 4.0;
    cfg.original_max_position = 8192;
    std::vector<int32_t> pos(2 * 13);
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = static_cast<int32_t>((i * 37) % 5000);
    v.push_back({"rope",
                 [=] { return ops::make_rope(cfg); },
                 {random_f32({2, 13, 4, 64}, 17), ints({2, 13}, pos)},
                 {true, false}});
  }
  {
    std::vector<int32_t> seg(2 * 45);
    for (size_t i = 0; i < seg.size(); ++i) seg[i] = i % 45 < 20 ? 1 : (i % 45 < 41 ? 2 : 0);
    for (int64_t D : {64, 128}) {
      v.push_back({"attention D" + std::to_string(D),
                   [] { return ops::make_attention(0.125); },
                   {random_f32({2, 45, 8, D}, 18), random_f32({2, 45, 2, D}, 19),
                    random_f32({2, 45, 2, D}, 20), ints({2, 45}, seg)},
                   {true, true, true, false}});
    }
    v.push_back({"attention no segments",
                 [] { return ops::make_attention(0.088); },
                 {random_f32({1, 70, 4, 64}, 21), random_f32({1, 70, 4, 64}, 22),
                  random_f32({1, 70, 4, 64}, 23), Tensor()},
                 {true, true, true, false}});
  }
  v.push_back({"silu", [] { return ops::make_silu(); }, {random_f32({4, 1003}, 24, 4.0)}, {true}});
  v.push_back({"swiglu",
               [] { return ops::make_swiglu(); },
               {random_f32({3, 517}, 25, 4.0), random_f32({3, 517}, 26)},
               {true, true}});
  v.push_back({"softmax", [] { return ops::make_softmax(); }, {random_f32({6, 1537}, 27, 5.0)}, {true}});
  {
    std::vector<int32_t> labels(37);
    for (size_t i = 0; i < labels.size(); ++i)
      labels[i] = i % 5 == 0 ? -100 : static_cast<int32_t>((i * 131) % 1001);
    v.push_back({"cross_entropy",
                 [] { return ops::make_cross_entropy(-100, 1.0 / 30); },
                 {random_f32({37, 1001}, 28, 3.0), ints({37}, labels)},
                 {true, false}});
    v.push_back({"linear_cross_entropy",
                 [] { return ops::make_linear_cross_entropy(-100, 1.0 / 30); },
                 {random_f32({37, 64}, 29), random_f32({1001, 64}, 30), ints({37}, labels)},
                 {true, true, false}});
  }
  v.push_back({"dropout", [] { return ops::make_dropout(0.25, 1234); }, {random_f32({2049}, 31)}, {true}});
  v.push_back({"cast", [] { return ops::make_cast(ENG_F32); }, {random_f32({7, 9}, 32)}, {true}});
  v.push_back({"concat",
               [] { return ops::make_concat(1); },
               {random_f32({3, 5, 4}, 33), random_f32({3, 2, 4}, 34)},
               {true, true}});
  {
    std::vector<int32_t> ids(29);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7) % 11);  // repeated ids
    v.push_back({"embedding",
                 [] { return ops::make_embedding(); },
                 {random_f32({50, 96}, 35), ints({29}, ids)},
                 {true, false}});
  }
  v.push_back({"sum", [] { return ops::make_sum(); }, {random_f32({3, 333}, 36)}, {true}});
  return v;
}

TEST(CudaOps, ForwardAndBackwardMatchCpuInF32) {
  SKIP_WITHOUT_GPU();
  for (const OpCase& c : cases()) run_case(c, ENG_F32);
}

TEST(CudaOps, ForwardAndBackwardMatchCpuInBf16) {
  SKIP_WITHOUT_GPU();
  for (const OpCase& c : cases()) {
    if (c.name == "cast") continue;  // f32 -> f32 is the identity
    run_case(c, ENG_BF16);
  }
}

TEST(CudaOps, InPlaceUpdatesMatchCpu) {
  SKIP_WITHOUT_GPU();
  Tensor a = random_f32({1000}, 40), b = random_f32({1000}, 41);
  Tensor ga = a.to_device(gpu()), gb = b.to(ENG_BF16).to_device(gpu());
  Tensor ca = a.clone();
  ops::axpby_(ca, 0.9, b.to(ENG_BF16), -0.3);
  ops::axpby_(ga, 0.9, gb, -0.3);
  EXPECT_LE(rel_error(ga.to_float_vector(), ca.to_float_vector()), 1e-6);
  ops::fill_(ga, 2.5);
  for (float x : ga.to_float_vector()) ASSERT_EQ(x, 2.5f);
  ops::copy_(ga, gb);
  EXPECT_EQ(ga.to_float_vector(), b.to(ENG_BF16).to_float_vector());
}

TEST(CudaOps, StridedCopiesAndDeviceRoundTrips) {
  SKIP_WITHOUT_GPU();
  Tensor x = random_f32({4, 6, 5}, 50);
  Tensor g = x.to_device(gpu());
  const Tensor t = g.transposed(0, 2).contiguous();  // strided gather on the GPU
  EXPECT_EQ(t.to_float_vector(), x.transposed(0, 2).contiguous().to_float_vector());
  Tensor h = Tensor::empty({5, 6, 4}, ENG_BF16, cpu_device());
  h.copy_from(g.transposed(0, 2));  // strided, converting, across devices
  EXPECT_EQ(h.to_float_vector(), x.transposed(0, 2).contiguous().to(ENG_BF16).to_float_vector());
}

}  // namespace
}  // namespace engine::rt
