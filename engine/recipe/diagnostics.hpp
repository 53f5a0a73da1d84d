// Recipe errors: every problem found in one validation pass, each with where it is (file:line:column, or the
// --set argument) and what would fix it. RecipeError carries them all.
#pragma once

#include <string>
#include <vector>

#include "engine/core/error.hpp"

namespace engine::recipe {

struct Diagnostic {
  std::string location;  // "recipes/x.toml:12:1", "--set optimizer.lr=abc", or the recipe path
  std::string message;

  std::string str() const { return location.empty() ? message : location + ": " + message; }
};

class RecipeError : public Error {
 public:
  explicit RecipeError(std::vector<Diagnostic> diagnostics)
      : Error(join(diagnostics), ENG_ERR_INVALID_ARGUMENT), diagnostics_(std::move(diagnostics)) {}
  const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

 private:
  static std::string join(const std::vector<Diagnostic>& ds) {
    std::string out;
    for (const Diagnostic& d : ds) {
      if (!out.empty()) out += '\n';
      out += d.str();
    }
    return out;
  }
  std::vector<Diagnostic> diagnostics_;
};

}  // namespace engine::recipe
