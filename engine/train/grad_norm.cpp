#include "engine/train/grad_norm.hpp"

#include <cmath>
#include <vector>

namespace engine::train {

double global_grad_norm(const rt::ParamStore& params) {
  double sum = 0.0;
  for (size_t i = 0; i < params.size(); ++i) {
    rt::Param& p = params.at(i);
    if (p.tied() || !p.trainable()) continue;
    rt::Tensor g = params.grad(p);
    if (!g.defined()) continue;
    if (g.dtype() == ENG_F32 && g.is_contiguous() && g.device().type() == rt::DeviceType::CPU) {
      const float* d = g.data<float>();
      const int64_t n = g.numel();
      for (int64_t k = 0; k < n; ++k) sum += static_cast<double>(d[k]) * static_cast<double>(d[k]);
    } else {
      for (double v : g.to_double_vector()) sum += v * v;
    }
  }
  return std::sqrt(sum);
}

double clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0.0 || !std::isfinite(norm)) return 1.0;
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

}  // namespace engine::train
