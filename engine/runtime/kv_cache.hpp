// KvCache: per-layer key/value tensors for generation, filled by ops::attention_with_cache.
#pragma once

#include <vector>

#include "engine/runtime/tensor.hpp"

namespace engine::rt {

struct KvCache {
  // k[layer], v[layer]: (B, max_len, Hkv, D), f32 on the CPU
  std::vector<Tensor> k, v;
  int64_t length = 0;   // positions already filled (all layers); advanced by the caller after a forward
  int64_t max_len = 0;

  KvCache(int n_layers, int64_t batch, int64_t max_len, int64_t n_kv_heads, int64_t head_dim, DType dtype, Device& device);
  void advance(int64_t tokens);  // throws when max_len would be exceeded
};

}  // namespace engine::rt
