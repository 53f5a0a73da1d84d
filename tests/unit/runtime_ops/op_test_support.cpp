#include "op_test_support.hpp"

#include <cmath>
#include <cstring>
#include <random>

namespace engine::rt::testing {

Tensor random_tensor(const Dims& shape, DType dtype, uint64_t seed, double scale) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> mag(0.05, 1.0);
  std::bernoulli_distribution sign(0.5);
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  for (double& x : v) x = (sign(rng) ? 1.0 : -1.0) * mag(rng) * scale;
  Tensor t64 = Tensor::from_vector(shape, ENG_F64, cpu_device(), v);
  return dtype == ENG_F64 ? t64 : t64.to(dtype);
}

Tensor random_ints(const Dims& shape, uint64_t seed, int64_t lo, int64_t hi, DType dtype) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(lo, hi);
  std::vector<int32_t> v(static_cast<size_t>(shape.numel()));
  for (int32_t& x : v) x = static_cast<int32_t>(dist(rng));
  Tensor t = Tensor::from_vector(shape, ENG_I32, cpu_device(), v);
  return dtype == ENG_I32 ? t : t.to(dtype);
}

std::vector<double> values(const Tensor& t) { return t.to_double_vector(); }

namespace {
double weighted_sum(const std::vector<Tensor>& outs, const std::vector<Tensor>& weights) {
  double s = 0.0;
  for (size_t k = 0; k < outs.size(); ++k) {
    const std::vector<double> o = outs[k].to_double_vector(), w = weights[k].to_double_vector();
    for (size_t i = 0; i < o.size(); ++i) s += o[i] * w[i];
  }
  return s;
}
}  // namespace

void expect_gradients_match(const std::function<std::unique_ptr<Node>()>& make,
                            const std::vector<Tensor>& inputs, const std::vector<bool>& check, double rtol,
                            double atol, double h) {
  std::unique_ptr<Node> node = make();
  const std::vector<Tensor> outs = node->forward(inputs, true);
  std::vector<Tensor> weights;
  for (size_t k = 0; k < outs.size(); ++k)
    weights.push_back(random_tensor(outs[k].shape(), ENG_F64, 1000 + k));
  const std::vector<Tensor> grads = node->backward(weights, check);
  ASSERT_EQ(grads.size(), inputs.size()) << node->name();
  std::unique_ptr<Node> probe = make();
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!check[i]) continue;
    ASSERT_TRUE(grads[i].defined()) << node->name() << ": no gradient for input " << i;
    ASSERT_EQ(grads[i].shape(), inputs[i].shape()) << node->name() << " input " << i;
    ASSERT_EQ(inputs[i].dtype(), ENG_F64);
    const std::vector<double> g = grads[i].to_double_vector();
    Tensor x = inputs[i].contiguous().clone();
    std::vector<Tensor> in = inputs;
    in[i] = x;
    double* p = x.data<double>();
    int bad = 0;
    for (int64_t e = 0; e < x.numel(); ++e) {
      const double x0 = p[e];
      p[e] = x0 + h;
      const double lp = weighted_sum(probe->forward(in, false), weights);
      p[e] = x0 - h;
      const double lm = weighted_sum(probe->forward(in, false), weights);
      p[e] = x0;
      const double fd = (lp - lm) / (2 * h);
      const double ga = g[static_cast<size_t>(e)];
      const double tol = rtol * std::max(std::fabs(fd), std::fabs(ga)) + atol;
      if (std::fabs(fd - ga) > tol && bad++ < 5)
        ADD_FAILURE() << node->name() << ": input " << i << " element " << e << ": analytic " << ga
                      << " vs finite difference " << fd;
    }
    EXPECT_EQ(bad, 0) << node->name() << ": " << bad << " gradient elements of input " << i << " disagree";
  }
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

void expect_close(const std::vector<double>& actual, const std::vector<double>& ref, double rtol, double atol,
                  const char* what) {
  ASSERT_EQ(actual.size(), ref.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::fabs(actual[i] - ref[i]) > rtol * std::fabs(ref[i]) + atol && bad++ < 5)
      ADD_FAILURE() << what << ": element " << i << ": " << actual[i] << " vs reference " << ref[i];
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.size() << " elements differ";
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

}  // namespace engine::rt::testing
