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
  // Adds or replaces `key`. Invalidates the pointers key_at returned.
  void put(const std::string& key, Tensor value);
  // The entry; throws engine::Error (ENG_ERR_NOT_FOUND) naming the key and the keys present.
  const Tensor& get(const std::string& key) const;
  bool contains(const std::string& key) const { return entries_.count(key) != 0; }
  size_t size() const { return entries_.size(); }
  std::vector<std::string> keys() const;  // sorted
  // The i-th key in sorted order, nullptr when i is out of range; the pointer stays valid until the
  // dictionary changes (eng_host_api::state_key_at). O(1) after the first call following a change.
  const char* key_at(size_t i) const;
  const std::map<std::string, Tensor>& entries() const { return entries_; }
  // Set on dictionaries the host creates for a plugin (state_create, safetensors_read): only those may be
  // freed through eng_host_api::state_destroy; the engine's own (checkpoint save/load) may not.
  void set_plugin_owned() { plugin_owned_ = true; }
  bool plugin_owned() const { return plugin_owned_; }
  void clear() {
    entries_.clear();
    key_index_.clear();
  }

 private:
  std::map<std::string, Tensor> entries_;
  mutable std::vector<const std::string*> key_index_;  // sorted keys; rebuilt lazily after a change
  bool plugin_owned_ = false;
};

}  // namespace engine::rt
