#include "engine/runtime/state_dict.hpp"

#include "engine/core/error.hpp"

namespace engine::rt {

void StateDict::put(const std::string& key, Tensor value) {
  if (key.empty()) fail("state dictionary: an entry needs a non-empty key");
  if (!value.defined()) fail("state dictionary: entry '{}' has no tensor", key);
  const bool added = entries_.find(key) == entries_.end();
  entries_[key] = std::move(value);
  if (added) key_index_.clear();
}

const Tensor& StateDict::get(const std::string& key) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    std::string present;
    int shown = 0;
    for (const auto& [k, v] : entries_) {
      if (shown++ == 12) {
        present += ", ...";
        break;
      }
      present += (present.empty() ? "" : ", ") + k;
    }
    fail_with(ENG_ERR_NOT_FOUND,
              "state dictionary has no entry '{}' (it has {} entries{}{}); was the state saved "
              "by the same plugin and version?",
              key, entries_.size(), present.empty() ? "" : ": ", present);
  }
  return it->second;
}

std::vector<std::string> StateDict::keys() const {
  std::vector<std::string> k;
  k.reserve(entries_.size());
  for (const auto& [key, v] : entries_) k.push_back(key);
  return k;
}

const char* StateDict::key_at(size_t i) const {
  if (i >= entries_.size()) return nullptr;
  if (key_index_.size() != entries_.size()) {
    key_index_.clear();
    key_index_.reserve(entries_.size());
    for (const auto& [key, v] : entries_) key_index_.push_back(&key);
  }
  return key_index_[i]->c_str();
}

}  // namespace engine::rt
