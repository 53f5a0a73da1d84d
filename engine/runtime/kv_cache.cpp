#include "engine/runtime/kv_cache.hpp"

#include "engine/core/error.hpp"

namespace engine::rt {

KvCache::KvCache(int n_layers, int64_t batch, int64_t max_len_, int64_t n_kv_heads, int64_t head_dim,
                 DType dtype, Device& device)
    : max_len(max_len_) {
  if (n_layers <= 0 || batch <= 0 || max_len_ <= 0 || n_kv_heads <= 0 || head_dim <= 0)
    fail("KV cache: layers {}, batch {}, max_len {}, kv heads {} and head_dim {} must all be positive",
         n_layers, batch, max_len_, n_kv_heads, head_dim);
  for (int l = 0; l < n_layers; ++l) {
    k.push_back(Tensor::zeros({batch, max_len_, n_kv_heads, head_dim}, dtype, device));
    v.push_back(Tensor::zeros({batch, max_len_, n_kv_heads, head_dim}, dtype, device));
  }
}

void KvCache::advance(int64_t tokens) {
  if (tokens < 0 || length + tokens > max_len)
    fail(
        "KV cache: advancing {} positions past {} exceeds max_len {}; start a new cache or raise the "
        "generation "
        "max length",
        tokens, length, max_len);
  length += tokens;
}

}  // namespace engine::rt
