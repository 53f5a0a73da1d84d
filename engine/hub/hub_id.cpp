#include "engine/hub/hub_id.hpp"

#include <cctype>

namespace engine::hub {

namespace {

bool valid_part(std::string_view s) {
  if (s.empty() || s.size() > 96 || s.front() == '.' || s.front() == '-') return false;
  if (s.find("..") != std::string_view::npos) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

bool valid_revision(std::string_view s) {
  if (s.empty() || s.size() > 256 || s.front() == '/' || s.find("..") != std::string_view::npos) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '/') return false;
  }
  return true;
}

}  // namespace

std::optional<HubId> parse_hub_id(std::string_view text, RepoType type) {
  HubId id;
  id.type = type;
  id.revision = "main";
  size_t at = text.find('@');
  if (at != std::string_view::npos) {
    if (!valid_revision(text.substr(at + 1))) return std::nullopt;
    id.revision = std::string(text.substr(at + 1));
    text = text.substr(0, at);
  }
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || text.find('/', slash + 1) != std::string_view::npos) return std::nullopt;
  if (!valid_part(text.substr(0, slash)) || !valid_part(text.substr(slash + 1))) return std::nullopt;
  id.repo = std::string(text);
  return id;
}

const char* repo_type_plural(RepoType type) noexcept { return type == RepoType::kDataset ? "datasets" : "models"; }

bool is_commit_hash(std::string_view s) noexcept {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f')) return false;
  }
  return true;
}

}  // namespace engine::hub
