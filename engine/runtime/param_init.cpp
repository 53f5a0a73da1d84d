// Initial values of parameters (see param_init.hpp).
#include "engine/runtime/param_init.hpp"

#include <vector>

#include <algorithm>
#include <cmath>

#include "engine/core/error.hpp"
#include "engine/runtime/rng.hpp"

namespace engine::rt {

void initial_values(const ParamDecl& d, uint64_t store_seed, int64_t offset, std::span<double> out) {
  const int64_t n = d.shape.numel(), count = static_cast<int64_t>(out.size());
  if (offset < 0 || count > n - offset)
    fail("parameter '{}': initial values [{}, {}) requested of {} elements", d.name, offset, offset + count,
         n);
  if (count == 0) return;
  Rng rng(Rng::derive(store_seed, d.name));
  switch (d.init) {
    case ENG_INIT_ZEROS:
      std::fill(out.begin(), out.end(), 0.0);
      break;
    case ENG_INIT_ONES:
      std::fill(out.begin(), out.end(), 1.0);
      break;
    case ENG_INIT_NORMAL: {  // N(0, a^2), Box-Muller over the pairs (2j, 2j+1) that overlap the range
      const int64_t first = offset - offset % 2, end = offset + count;
      rng.skip(static_cast<uint64_t>(first));
      for (int64_t i = first; i < end; i += 2) {
        const double u1 = 1.0 - rng.next_double(), u2 = rng.next_double();
        const double r = std::sqrt(-2.0 * std::log(u1)), t = 2.0 * M_PI * u2;
        if (i >= offset) out[static_cast<size_t>(i - offset)] = d.init_arg * r * std::cos(t);
        if (i + 1 < end) out[static_cast<size_t>(i + 1 - offset)] = d.init_arg * r * std::sin(t);
      }
      break;
    }
    case ENG_INIT_UNIFORM:  // U(-a, a)
      rng.skip(static_cast<uint64_t>(offset));
      for (double& x : out) x = d.init_arg * (2.0 * rng.next_double() - 1.0);
      break;
    case ENG_INIT_KAIMING_UNIFORM: {
      // torch.nn.init.kaiming_uniform_(w, a=sqrt(init_arg)), leaky_relu gain, fan_in mode:
      // gain = sqrt(2 / (1 + a^2)) = sqrt(2 / (1 + init_arg)), bound = gain * sqrt(3 / fan_in).
      // With init_arg = 5 (nn.Linear, PEFT's lora_A) bound = 1 / sqrt(fan_in).
      if (d.shape.ndim < 2) fail("parameter '{}': kaiming_uniform needs a weight of rank >= 2", d.name);
      int64_t fan_in = d.shape[1];
      for (int i = 2; i < d.shape.ndim; ++i) fan_in *= d.shape[i];
      const double bound = std::sqrt(2.0 / (1.0 + d.init_arg)) * std::sqrt(3.0 / static_cast<double>(fan_in));
      rng.skip(static_cast<uint64_t>(offset));
      for (double& x : out) x = bound * (2.0 * rng.next_double() - 1.0);
      break;
    }
    default:
      fail("parameter '{}': unknown init kind {}", d.name, d.init);
  }
}

Tensor initial_value(const ParamDecl& decl, uint64_t store_seed, DType dtype, Device& device) {
  std::vector<double> v(static_cast<size_t>(decl.shape.numel()));
  initial_values(decl, store_seed, 0, v);
  Tensor host = Tensor::from_vector(decl.shape, ENG_F64, cpu_device(), v);
  Tensor out = Tensor::empty(decl.shape, dtype, device);
  out.copy_from(host);  // to the device and into the storage dtype
  return out;
}

}  // namespace engine::rt
