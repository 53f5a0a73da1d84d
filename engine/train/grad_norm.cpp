#include "engine/train/grad_norm.hpp"

#include <cmath>
#include <vector>

#include "engine/runtime/kernel_table.hpp"

namespace engine::train {

double global_grad_norm(const rt::ParamStore& params) { return std::sqrt(grad_sum_squares(params)); }

double grad_sum_squares(const rt::ParamStore& params) {
  return grad_sum_squares(params, [](const rt::Param&) { return true; });
}

double grad_sum_squares(const rt::ParamStore& params, const std::function<bool(const rt::Param&)>& include) {
  // One running sum of squares per device the gradients live on (f64, in parameter order; one device unless
  // the layers are placed on several), each read once.
  std::vector<rt::Tensor> sums;
  for (size_t i = 0; i < params.size(); ++i) {
    rt::Param& p = params.at(i);
    if (p.tied() || !p.trainable() || !include(p)) continue;
    rt::Tensor g = params.local_grad(p);  // zero3: this rank's shard (padding is zero); else the whole
    if (!g.defined()) continue;
    rt::Tensor* sum = nullptr;
    for (rt::Tensor& s : sums)
      if (&s.device() == &g.device()) sum = &s;
    if (sum == nullptr) {
      sum = &sums.emplace_back(rt::Tensor::empty(rt::Dims{}, ENG_F64, g.device()));
      g.device().kernels().fill(*sum, 0.0);
    }
    g.device().kernels().sum_squares(g.contiguous(), *sum, true);
  }
  double total = 0.0;
  for (const rt::Tensor& s : sums) total += s.item();
  return total;
}

double clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0.0 || !std::isfinite(norm)) return 1.0;
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}

}  // namespace engine::train
