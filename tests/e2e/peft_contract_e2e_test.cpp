// The PEFT contract, held by the engine rather than by each plugin's care: with a careless PEFT plugin
// (tests/plugins/careless_peft.cpp: it never freezes the base and saves only its adapters)
//  - the run trains exactly the adapters (the engine froze the base), and saves and resumes them;
//  - a base parameter the plugin marks trainable but does not save makes the save fail, naming it;
//  - resuming a checkpoint whose files do not cover the run's trainable set is refused, naming what is missing.
#include <cstdlib>

#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

// recipes/tiny_lora.toml with its [peft] section replaced and its relative paths made absolute.
fs::path write_recipe(const fs::path& dir, const std::string& peft_section) {
  std::string text = read_file(source_dir() / "recipes/tiny_lora.toml");
  const size_t begin = text.find("[peft]");
  const size_t end = text.find("\n[", begin + 1);
  text = text.substr(0, begin) + peft_section + text.substr(end);
  std::string root = source_dir().string();
  root.insert(root.begin(), '"');
  root.push_back('/');
  std::string absolute;
  size_t from = 0;
  for (size_t at = text.find("\"../"); at != std::string::npos; from = at + 4, at = text.find("\"../", from))
    absolute += text.substr(from, at - from) + root;
  absolute += text.substr(from);
  const fs::path out = dir / "recipe.toml";
  std::ofstream(out) << absolute;
  return out;
}

std::vector<std::string> run_args(const fs::path& recipe, const fs::path& model, const fs::path& out, int steps) {
  return {"run", recipe.string(), "--set", "model.path=" + model.string(), "--set",
          "train.output_dir=" + out.string(), "--set", "train.max_steps=" + std::to_string(steps), "--set",
          "checkpoint.save_every=3", "--set", "checkpoint.keep_last=0", "--set", "train.eval_every=0", "--set",
          "log.every=1"};
}

// Total elements of the tensors in a .safetensors file (its JSON header only).
int64_t safetensors_numel(const fs::path& file) {
  const std::string bytes = read_file(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes.at(static_cast<size_t>(i)));
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n));
  int64_t total = 0;
  for (const auto& [key, t] : header.items()) {
    if (key == "__metadata__") continue;
    int64_t e = 1;
    for (const auto& d : t["shape"]) e *= d.get<int64_t>();
    total += e;
  }
  return total;
}

class PeftContract : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string path = std::string(std::getenv("ENGINE_BINARY_DIR")) + "/tests/plugins/careless";
    if (const char* in_tree = std::getenv("ENGINE_PLUGIN_PATH")) path += std::string(":") + in_tree;
    setenv("ENGINE_PLUGIN_PATH", path.c_str(), 1);
  }
};

TEST_F(PeftContract, CarelessPluginTrainsOnlyItsAdaptersAndMismatchesAreRefused) {
  const fs::path dir = fresh_dir("peft_contract");
  const fs::path model = dir / "model";
  const fs::path careless = write_recipe(dir, "[peft]\nplugin = \"careless_peft\"\n");

  // 1. Only the adapters train, although the plugin froze nothing; the checkpoints cover them and resume.
  const fs::path a = dir / "a";
  ASSERT_EQ(run_engine(run_args(careless, model, a, 6), dir / "a.log"), 0) << read_file(dir / "a.log");
  const std::string log = read_file(dir / "a.log");
  const int64_t adapters = safetensors_numel(a / "checkpoint-3/adapter_model.safetensors");
  ASSERT_GT(adapters, 0);
  EXPECT_NE(log.find(", " + std::to_string(adapters) + " trainable, careless_peft adapters"), std::string::npos)
      << "the run trains more than the " << adapters << " adapter weights:\n"
      << log;
  auto from_3 = [&](std::vector<std::string> args) {
    args.insert(args.end(), {"--resume", (a / "checkpoint-3").string()});
    return args;
  };
  ASSERT_EQ(run_engine(from_3(run_args(careless, model, dir / "a2", 6)), dir / "a2.log"), 0)
      << read_file(dir / "a2.log");
  EXPECT_NE(read_file(dir / "a2.log").find("resumed from"), std::string::npos) << read_file(dir / "a2.log");
  EXPECT_TRUE(same_bytes(a / "checkpoint-6/adapter_model.safetensors",
                         dir / "a2/checkpoint-6/adapter_model.safetensors"));

  // 2. A base parameter it trains but does not save: the save fails, naming it; no checkpoint is published.
  const fs::path trains_norm =
      write_recipe(dir, "[peft]\nplugin = \"careless_peft\"\ntrain_base = [\"model.norm.weight\"]\n");
  const fs::path b = dir / "b";
  EXPECT_NE(run_engine(run_args(trains_norm, model, b, 6), dir / "b.log"), 0) << read_file(dir / "b.log");
  const std::string blog = read_file(dir / "b.log");
  EXPECT_NE(blog.find("lacks 1 trainable parameter(s) (model.norm.weight)"), std::string::npos) << blog;
  EXPECT_FALSE(fs::exists(b / "checkpoint-3"));

  // 3. Resuming a's checkpoint with a run that trains more than it saved: refused, naming the parameter.
  const fs::path c = dir / "c";
  EXPECT_NE(run_engine(from_3(run_args(trains_norm, model, c, 6)), dir / "c.log"), 0) << read_file(dir / "c.log");
  const std::string clog = read_file(dir / "c.log");
  EXPECT_NE(clog.find("checkpoint-3 does not hold exactly the run's trainable parameters"), std::string::npos)
      << clog;
  EXPECT_NE(clog.find("(model.norm.weight)"), std::string::npos) << clog;
  EXPECT_FALSE(fs::exists(c / "checkpoint-6"));
}

}  // namespace
}  // namespace engine::e2e
