// StateDict: a string-keyed tensor dictionary (eng_state across the ABI): optimizer and parallel-strategy
// state on its way to and from a checkpoint. Entries are references, not copies: a writer puts its live state
// tensors and the checkpoint writer reads them before the next step; a reader copies what it gets into its
// own state.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/runtime/tensor.hpp"

namespace engine::rt {

class StateDict {
 public:
  // Adds or replaces `key`.
  void put(const std::string& key, Tensor value);
  // The entry; throws engine::Error (ENG_ERR_NOT_FOUND) naming the key and the keys present.
  const Tensor& get(const std::string& key) const;
  bool contains(const std::string& key) const { return entries_.count(key) != 0; }
  size_t size() const { return entries_.size(); }
  std::vector<std::string> keys() const;  // sorted
  const std::map<std::string, Tensor>& entries() const { return entries_; }
  void clear() { entries_.clear(); }

 private:
  std::map<std::string, Tensor> entries_;
};

}  // namespace engine::rt
