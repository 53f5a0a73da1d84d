// engine init-model and engine generate, end to end through the `engine` binary.
//  - init-model writes a Hugging Face directory whose tensors are exactly the plugin's declared parameters,
//    initialised as declared, reproducible from the seed, with a tokenizer matching the config's vocabulary.
//  - generate prints what transformers generates (tests/data/models/generate/qwen2_chat/expected.json, made
//  by
//    scripts/fixtures/make_model_fixtures.py) for a plain prompt and for the same prompt as a chat turn.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/data/tokenizer.hpp"
#include "engine/io/safetensors.hpp"
#include "plugins/common/decoder_config.hpp"
#include "plugins/common/decoder_params.hpp"

namespace {

namespace fs = std::filesystem;

struct CliRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs `engine <args>` (arguments single-quoted), capturing stdout and stderr.
CliRun engine(const std::vector<std::string>& args, const fs::path& scratch) {
  std::string cmd = std::string(std::getenv("ENGINE_BINARY_DIR")) + "/bin/engine";
  for (const std::string& a : args) cmd += " '" + a + "'";
  const fs::path err = scratch / "stderr.txt";
  cmd += " 2>'" + err.string() + "'";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_file(err);
  return r;
}

class ModelCli : public ::testing::Test {
 protected:
  void SetUp() override {
    scratch_ = fs::temp_directory_path() / ("engine_model_cli_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(scratch_);
    fs::create_directories(scratch_);
  }
  void TearDown() override { fs::remove_all(scratch_); }
  fs::path scratch_;
};

TEST_F(ModelCli, InitModelWritesTheDeclaredParametersReproduciblyFromTheSeed) {
  for (const std::string arch : {"qwen2", "llama"}) {
    const fs::path a = scratch_ / (arch + "_a"), b = scratch_ / (arch + "_b"), c = scratch_ / (arch + "_c");
    ASSERT_EQ(engine({"init-model", "--arch", arch, "--preset", "tiny", "--out", a.string(), "--seed", "5"},
                     scratch_)
                  .exit_code,
              0);
    ASSERT_EQ(engine({"init-model", "--arch", arch, "--preset", "tiny", "--out", b.string(), "--seed", "5"},
                     scratch_)
                  .exit_code,
              0);
    ASSERT_EQ(
        engine({"init-model", "--arch", arch, "--preset", "tiny", "--out", c.string(), "--seed=6"}, scratch_)
            .exit_code,
        0);
    const std::string weights = read_file(a / "model.safetensors");
    EXPECT_EQ(weights, read_file(b / "model.safetensors")) << "the same seed gives the same bytes";
    EXPECT_NE(weights, read_file(c / "model.safetensors")) << "another seed gives other weights";

    const auto arch_enum =
        arch == "qwen2" ? engine::plugins::decoder::Arch::kQwen2 : engine::plugins::decoder::Arch::kLlama;
    auto config = engine::plugins::decoder::parse_decoder_config(read_file(a / "config.json"), arch_enum);
    auto specs = engine::plugins::decoder::decoder_param_specs(config);
    auto file = engine::io::SafetensorsFile::open(a / "model.safetensors");
    std::set<std::string> names;
    for (auto n : file.names()) names.insert(std::string(n));
    ASSERT_EQ(names.size(), specs.size());
    EXPECT_EQ(file.metadata().at("format"), "pt");
    for (const auto& s : specs) {
      ASSERT_TRUE(names.count(s.name)) << s.name;
      auto t = file.tensor(s.name);
      EXPECT_EQ(t.dtype_name, "F32");
      EXPECT_EQ(std::vector<int64_t>(t.shape.begin(), t.shape.end()), s.shape) << s.name;
      std::vector<float> v(static_cast<size_t>(t.numel()));
      std::memcpy(v.data(), t.data, t.nbytes);
      double sum = 0, sq = 0;
      for (float x : v) sum += x, sq += double(x) * x;
      const double mean = sum / double(v.size()), sd = std::sqrt(sq / double(v.size()) - mean * mean);
      if (s.role == ENG_ROLE_NORM) {
        EXPECT_EQ(mean, 1.0) << s.name;
        EXPECT_EQ(sd, 0.0) << s.name;
      } else if (s.role == ENG_ROLE_BIAS) {
        EXPECT_EQ(sq, 0.0) << s.name;
      } else {  // N(0, initializer_range^2)
        EXPECT_NEAR(sd, config.initializer_range, 0.15 * config.initializer_range) << s.name;
        EXPECT_NEAR(mean, 0.0, 0.2 * config.initializer_range) << s.name;
      }
    }
    // the tokenizer covers the vocabulary and its special tokens are the config's bos/eos
    auto tok = engine::data::Tokenizer::from_file(a);
    EXPECT_EQ(static_cast<int64_t>(tok.vocab_size()), config.vocab_size);
    EXPECT_TRUE(tok.is_special(static_cast<int32_t>(config.eos_token_id)));
    EXPECT_TRUE(tok.is_special(static_cast<int32_t>(config.bos_token_id)));
    auto tc = nlohmann::json::parse(read_file(a / "tokenizer_config.json"));
    EXPECT_EQ(tok.token_to_id(tc["eos_token"].get<std::string>()), static_cast<int32_t>(config.eos_token_id));
  }
}

TEST_F(ModelCli, InitModelRefusesUnknownPresetsAndNonEmptyDirectories) {
  CliRun r = engine({"init-model", "--arch", "qwen2", "--preset", "huge", "--out", (scratch_ / "x").string()},
                    scratch_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("tiny, small"), std::string::npos) << r.err;
  std::ofstream(scratch_ / "occupied.txt") << "x";
  r = engine({"init-model", "--arch", "llama", "--preset", "tiny", "--out", scratch_.string()}, scratch_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not an empty directory"), std::string::npos) << r.err;
  r = engine({"init-model", "--arch", "mistral", "--preset", "tiny", "--out", (scratch_ / "y").string()},
             scratch_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("mistral"), std::string::npos) << r.err;
}

TEST_F(ModelCli, GenerateGreedyPrintsWhatTransformersGenerates) {
  const fs::path dir = fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" / "generate" / "qwen2_chat";
  auto expected = nlohmann::json::parse(read_file(dir / "expected.json"));
  const std::string prompt = expected["prompt"], n = std::to_string(expected["max_new_tokens"].get<int>());
  CliRun plain =
      engine({"generate", "--model", dir.string(), "--prompt", prompt, "--max-new-tokens", n}, scratch_);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.out, expected["plain"]["text"].get<std::string>() + "\n");
  CliRun chat = engine(
      {"generate", "--model", dir.string(), "--prompt", prompt, "--chat", "--max-new-tokens", n}, scratch_);
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_EQ(chat.out, expected["chat"]["text"].get<std::string>() + "\n");
}

TEST_F(ModelCli, GenerateSamplingIsReproducibleFromTheSeedAndRefusesBadOptions) {
  const fs::path dir = fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" / "generate" / "qwen2_chat";
  auto sample = [&](const std::string& seed) {
    return engine({"generate", "--model", dir.string(), "--prompt", "Once upon a time", "--max-new-tokens",
                   "24", "--temperature", "1.5", "--top-p", "0.95", "--seed", seed},
                  scratch_);
  };
  CliRun a = sample("1"), b = sample("1"), c = sample("2");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
  CliRun bad = engine({"generate", "--model", dir.string(), "--prompt", "x", "--top-p", "1.5"}, scratch_);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--top-p"), std::string::npos) << bad.err;
  CliRun missing = engine({"generate", "--prompt", "x"}, scratch_);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--model"), std::string::npos) << missing.err;
}

}  // namespace
