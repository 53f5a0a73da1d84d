// libFuzzer target: the recipe parser with --set. The input is a TOML recipe, optionally followed by
// "\n--set--\n" and one `section.key=value` override per line. The recipe is written to a scratch file (the
// loader reads files: includes, relative paths) and loaded against the plugins on ENGINE_PLUGIN_PATH
// (fuzz.sh points it at the regular build's plugins), so plugin options are parsed too. A RecipeError listing
// diagnostics is the clean failure.
#include <unistd.h>

#include <fstream>
#include <memory>
#include <vector>

#include "engine/plugins/plugin_registry.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/recipe/recipe_loader.hpp"
#include "fuzz/fuzz_support.hpp"

namespace {

const engine::plugins::PluginRegistry& registry() {
  static const auto r = [] {
    auto reg = std::make_unique<engine::plugins::PluginRegistry>();
    reg->load_search_path(engine::plugins::default_plugin_search_path());
    return reg;
  }();
  return *r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("recipe-fuzz-" + std::to_string(::getpid()) + ".toml");
  const auto [toml, set_text] = engine::fuzz::split_once(engine::fuzz::as_text(data, size), "\n--set--\n");
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(toml.data(), static_cast<std::streamsize>(toml.size()));
  }
  std::vector<std::string> sets;
  std::string_view rest = set_text;
  while (!rest.empty()) {
    const auto [line, after] = engine::fuzz::split_once(rest, "\n");
    if (!line.empty()) sets.emplace_back(line);
    rest = after;
  }
  engine::fuzz::expect_clean([&] { (void)engine::recipe::load_recipe(file, sets, registry()); });
  return 0;
}
