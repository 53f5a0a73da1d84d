#include "engine/train/model_flops.hpp"

namespace engine::train {

double matmul_params(const eng_model_info& info) {
  const double c = double(info.hidden_size);
  const double q = double(info.n_heads) * info.head_dim;
  const double kv = double(info.n_kv_heads) * info.head_dim;
  const double per_layer = c * q + 2.0 * c * kv + q * c + 3.0 * c * double(info.intermediate_size);
  return double(info.n_layers) * per_layer + double(info.vocab_size) * c;
}

double step_model_flops(const eng_model_info& info, bool base_trainable, std::span<const data::Batch> micro) {
  const double per_token = (base_trainable ? 6.0 : 4.0) * matmul_params(info);
  const double q = double(info.n_heads) * info.head_dim;
  double tokens = 0, causal_pairs = 0;  // sum over samples of len^2 / 2
  for (const data::Batch& b : micro) {
    for (int32_t r = 0; r < b.rows; ++r) {
      const int32_t* seg = b.segment_ids.data() + int64_t(r) * b.seq_len;
      int64_t run = 0;
      int32_t current = 0;
      auto close = [&] { causal_pairs += 0.5 * double(run) * double(run); };
      for (int32_t t = 0; t < b.seq_len; ++t) {
        if (seg[t] == 0) continue;  // padding
        tokens += 1;
        if (seg[t] != current) {
          close();
          run = 0;
          current = seg[t];
        }
        ++run;
      }
      close();
    }
  }
  // QK^T and PV: 2 matmuls x 2 FLOPs x q per (query, key) pair, per layer; forward + backward = 3.5x.
  const double attention = 3.5 * 2.0 * 2.0 * q * double(info.n_layers) * causal_pairs;
  return tokens * per_token + attention;
}

}  // namespace engine::train
