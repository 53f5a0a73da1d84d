#include "engine/runtime/param_init.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/core/error.hpp"
#include "engine/runtime/rng.hpp"

namespace engine::rt {

Tensor initial_value(const ParamDecl& d, uint64_t seed, DType dtype, Device& device) {
  const int64_t n = d.shape.numel();
  std::vector<double> v(static_cast<size_t>(n), 0.0);
  Rng rng(Rng::derive(seed, d.name));
  switch (d.init) {
    case ENG_INIT_ZEROS:
      break;
    case ENG_INIT_ONES:
      std::fill(v.begin(), v.end(), 1.0);
      break;
    case ENG_INIT_NORMAL:  // N(0, a^2), Box-Muller
      for (int64_t i = 0; i < n; i += 2) {
        const double u1 = 1.0 - rng.next_double(), u2 = rng.next_double();
        const double r = std::sqrt(-2.0 * std::log(u1)), t = 2.0 * M_PI * u2;
        v[static_cast<size_t>(i)] = d.init_arg * r * std::cos(t);
        if (i + 1 < n) v[static_cast<size_t>(i + 1)] = d.init_arg * r * std::sin(t);
      }
      break;
    case ENG_INIT_UNIFORM:  // U(-a, a)
      for (double& x : v) x = d.init_arg * (2.0 * rng.next_double() - 1.0);
      break;
    case ENG_INIT_KAIMING_UNIFORM: {
      // torch.nn.init.kaiming_uniform_(w, a=sqrt(init_arg)), leaky_relu gain, fan_in mode:
      // gain = sqrt(2 / (1 + a^2)) = sqrt(2 / (1 + init_arg)), bound = gain * sqrt(3 / fan_in).
      // With init_arg = 5 (nn.Linear, PEFT's lora_A) bound = 1 / sqrt(fan_in).
      int64_t fan_in = d.shape[1];
      for (int i = 2; i < d.shape.ndim; ++i) fan_in *= d.shape[i];
      const double bound = std::sqrt(2.0 / (1.0 + d.init_arg)) * std::sqrt(3.0 / static_cast<double>(fan_in));
      for (double& x : v) x = bound * (2.0 * rng.next_double() - 1.0);
      break;
    }
    default:
      fail("parameter '{}': unknown init kind {}", d.name, d.init);
  }
  Tensor host = Tensor::from_vector(d.shape, ENG_F64, cpu_device(), v);
  Tensor out = Tensor::empty(d.shape, dtype, device);
  out.copy_from(host.to_device(device));
  return out;
}

}  // namespace engine::rt
