// What the strategies that place whole decoder blocks (pp: on pipeline stages; layers: on the devices of one
// process) share: each parameter's block (a PEFT adapter declared outside the blocks goes with the module it
// adapts), where the parameters outside the blocks go, what each block costs at rest, and the contiguous cut
// of the blocks into parts of even cost. Built against the SDK only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/cpp/host.hpp"

namespace engine::plugins_common {

// Bytes a parameter costs where it lives: the weight, and for a trainable one its f32 gradient and AdamW's two
// f32 moments.
inline int64_t resting_bytes(const sdk::ParamInfo& info) {
  const int64_t weight = info.numel() * static_cast<int64_t>(info.trainable() ? 4 : sdk::dtype_size(info.dtype));
  return weight + (info.trainable() ? 12 * info.numel() : 0);
}

// The module a parameter belongs to ("model.layers.0.self_attn.q_proj.weight" -> "...q_proj").
inline std::string module_of(const std::string& name) {
  for (const char* suffix : {".weight", ".bias"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0)
      return name.substr(0, name.size() - s.size());
  }
  return name;
}

// Whether an adapter's name extends module `m` ("...q_proj."): PEFT prefixes it ("base_model.model." + the
// module + ".lora_A.weight"), so `m` may start after any dot.
inline bool extends_module(const std::string& name, const std::string& m) {
  for (size_t at = name.find(m); at != std::string::npos; at = name.find(m, at + 1))
    if (at == 0 || name[at - 1] == '.') return true;
  return false;
}

// The host's parameters with, for each, its block and where it goes when it is in none.
struct BlockParams {
  enum Outside : int32_t { kFirst = -1, kLast = -2, kBoth = -3 };  // kBoth: a tied embedding (input and head)
  std::vector<sdk::Param> params;
  std::vector<sdk::ParamInfo> infos;
  std::vector<int32_t> block;  // >= 0: the decoder block; else an Outside

  BlockParams(sdk::Host& host, const eng_model_info& model) {
    const std::string lm_head = model.lm_head_param != nullptr ? model.lm_head_param : "";
    params = host.params();
    for (sdk::Param p : params) infos.push_back(host.info(p));
    block.assign(infos.size(), -1);
    for (size_t i = 0; i < infos.size(); ++i) {
      block[i] = infos[i].block;
      if (block[i] >= 0) continue;
      if (infos[i].role == ENG_ROLE_ADAPTER) {  // the block of the parameter whose module it extends
        size_t best = 0;
        for (size_t j = 0; j < infos.size(); ++j) {
          if (infos[j].role == ENG_ROLE_ADAPTER || infos[j].block < 0) continue;
          const std::string m = module_of(infos[j].name) + ".";
          if (m.size() > best && extends_module(infos[i].name, m)) {
            best = m.size();
            block[i] = infos[j].block;
          }
        }
        if (block[i] >= 0) continue;
      }
      if (infos[i].role == ENG_ROLE_EMBEDDING)
        block[i] = infos[i].name == lm_head ? kBoth : kFirst;
      else
        block[i] = kLast;  // the final norm, lm_head and its adapters
    }
  }

  // Resting bytes per block, and of the parameters outside the blocks that go with the first part (`head`:
  // the embedding, a tied one included) and the last (`tail`). Tied parameters cost their root.
  void costs(int64_t layers, std::vector<int64_t>& cost, int64_t& head, int64_t& tail) const {
    cost.assign(static_cast<size_t>(layers), 0);
    head = tail = 0;
    for (size_t i = 0; i < infos.size(); ++i) {
      if ((infos[i].flags & ENG_PARAM_TIED) != 0) continue;
      const int64_t b = resting_bytes(infos[i]);
      if (block[i] >= 0 && block[i] < layers)
        cost[static_cast<size_t>(block[i])] += b;
      else if (block[i] == kLast)
        tail += b;
      else
        head += b;  // kFirst, kBoth
    }
  }
};

// Contiguous cut of `cost` (per block) into `parts` ranges minimising the largest range's cost plus its fixed
// extra (first: `head`, last: `tail`). Returns the block count of each part (each >= 1; parts <= blocks).
inline std::vector<int64_t> balanced_cut(const std::vector<int64_t>& cost, int64_t parts, int64_t head, int64_t tail) {
  const int64_t n = static_cast<int64_t>(cost.size());
  std::vector<int64_t> prefix(static_cast<size_t>(n + 1), 0);
  for (int64_t i = 0; i < n; ++i) prefix[static_cast<size_t>(i + 1)] = prefix[static_cast<size_t>(i)] + cost[static_cast<size_t>(i)];
  constexpr int64_t kInf = std::numeric_limits<int64_t>::max();
  // best[k][i]: the smallest largest cost of cutting blocks [0, i) into k parts; from[k][i]: where part k starts.
  std::vector<std::vector<int64_t>> best(static_cast<size_t>(parts + 1), std::vector<int64_t>(static_cast<size_t>(n + 1), kInf));
  std::vector<std::vector<int64_t>> from(best.size(), std::vector<int64_t>(static_cast<size_t>(n + 1), 0));
  best[0][0] = 0;
  for (int64_t k = 1; k <= parts; ++k) {
    for (int64_t i = k; i <= n - (parts - k); ++i) {
      for (int64_t j = k - 1; j < i; ++j) {
        if (best[static_cast<size_t>(k - 1)][static_cast<size_t>(j)] == kInf) continue;
        int64_t c = prefix[static_cast<size_t>(i)] - prefix[static_cast<size_t>(j)];
        if (k == 1) c += head;
        if (k == parts) c += tail;
        const int64_t worst = std::max(best[static_cast<size_t>(k - 1)][static_cast<size_t>(j)], c);
        if (worst < best[static_cast<size_t>(k)][static_cast<size_t>(i)]) {
          best[static_cast<size_t>(k)][static_cast<size_t>(i)] = worst;
          from[static_cast<size_t>(k)][static_cast<size_t>(i)] = j;
        }
      }
    }
  }
  std::vector<int64_t> counts(static_cast<size_t>(parts));
  int64_t i = n;
  for (int64_t k = parts; k >= 1; --k) {
    const int64_t j = from[static_cast<size_t>(k)][static_cast<size_t>(i)];
    counts[static_cast<size_t>(k - 1)] = i - j;
    i = j;
  }
  return counts;
}

}  // namespace engine::plugins_common
