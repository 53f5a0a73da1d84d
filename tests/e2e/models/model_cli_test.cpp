// engine init-model and engine generate, end to end through the `engine` binary.
//  - init-model writes a Hugging Face directory whose tensors are exactly the plugin's declared parameters,
//    initialised as declared, reproducible from the seed, with a tokenizer matching the config's vocabulary;
//    from a preset or from a config.json (bf16 shards + index, read back with the engine's reader, trained on
//    by `engine run`); it never writes into a non-empty folder.
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
#include "engine/io/safetensors_checkpoint.hpp"
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

// A config of a published shape, scaled down to seconds: untied, llama3 RoPE for llama; the preset's
// vocabulary and special ids, so the built-in tokenizer fits.
std::string small_config(const std::string& arch) {
  nlohmann::ordered_json c = {{"architectures", {arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
                              {"model_type", arch},
                              {"hidden_act", "silu"},
                              {"hidden_size", 64},
                              {"intermediate_size", 96},
                              {"num_hidden_layers", 2},
                              {"num_attention_heads", 4},
                              {"num_key_value_heads", 2},
                              {"vocab_size", 512},
                              {"max_position_embeddings", 1024},
                              {"rms_norm_eps", 1e-5},
                              {"initializer_range", 0.03},
                              {"tie_word_embeddings", false},
                              {"bos_token_id", arch == "qwen2" ? 509 : 507},
                              {"eos_token_id", 511},
                              {"torch_dtype", "bfloat16"}};
  if (arch == "llama") {
    c["rope_theta"] = 500000.0;
    c["rope_scaling"] = {{"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 256},
                         {"rope_type", "llama3"}};
  } else {
    c["rope_theta"] = 1000000.0;
  }
  return c.dump(2);
}

// Names of the directory's entries.
std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// init-model --config: bf16 shards and an index past --max-shard-size, read back with the engine's reader;
// the same seed gives the same bytes whatever the thread count; and `engine run` trains on the result.
TEST_F(ModelCli, InitModelFromAConfigWritesBf16ShardsThatTheEngineTrainsOn) {
  for (const std::string arch : {"qwen2", "llama"}) {
    SCOPED_TRACE(arch);
    const fs::path cfg = scratch_ / (arch + "_config.json");
    std::ofstream(cfg) << small_config(arch);
    const fs::path a = scratch_ / (arch + "_a"), b = scratch_ / (arch + "_b");
    CliRun r = engine({"init-model", "--arch", arch, "--config", cfg.string(), "--out", a.string(), "--seed",
                       "3", "--max-shard-size", "100KB", "--threads", "1"},
                      scratch_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("shards"), std::string::npos) << r.out;
    fs::create_directories(b);  // an empty directory the user made is fine
    r = engine({"init-model", "--arch", arch, "--config", cfg.string(), "--out", b.string(), "--seed=3",
                "--max-shard-size=100KB", "--threads=3"},
               scratch_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(entries(a), entries(b));
    for (const std::string& f : entries(a)) EXPECT_EQ(read_file(a / f), read_file(b / f)) << f;
    for (const std::string& f : entries(scratch_))
      EXPECT_EQ(f.find(".tmp-"), std::string::npos) << "staging directory left behind: " << f;

    auto config = engine::plugins::decoder::parse_decoder_config(
        read_file(a / "config.json"),
        arch == "qwen2" ? engine::plugins::decoder::Arch::kQwen2 : engine::plugins::decoder::Arch::kLlama);
    EXPECT_EQ(nlohmann::json::parse(read_file(a / "config.json"))["torch_dtype"], "bfloat16");
    const auto specs = engine::plugins::decoder::decoder_param_specs(config);
    const auto index = nlohmann::json::parse(read_file(a / "model.safetensors.index.json"));
    ASSERT_EQ(index["weight_map"].size(), specs.size());
    const auto ckpt = engine::io::SafetensorsCheckpoint::open(a);
    ASSERT_GT(ckpt.shards().size(), 1u);
    uint64_t total = 0;
    for (const auto& s : specs) {
      const auto t = ckpt.tensor(s.name);
      EXPECT_EQ(t.dtype_name, "BF16") << s.name;
      EXPECT_EQ(std::vector<int64_t>(t.shape.begin(), t.shape.end()), s.shape) << s.name;
      EXPECT_EQ(fs::path(ckpt.shard_of(s.name).path()).filename().string(), index["weight_map"][s.name])
          << s.name;
      total += t.nbytes;
      if (s.role == ENG_ROLE_LINEAR || s.role == ENG_ROLE_EMBEDDING) {  // N(0, 0.03^2), from the config
        double sq = 0;
        for (size_t i = 0; i < t.nbytes / 2; ++i) {
          uint16_t bits;
          std::memcpy(&bits, t.data + 2 * i, 2);
          const uint32_t f32 = uint32_t{bits} << 16;
          float x;
          std::memcpy(&x, &f32, 4);
          sq += double(x) * x;
        }
        EXPECT_NEAR(std::sqrt(sq / double(t.nbytes / 2)), 0.03, 0.15 * 0.03) << s.name;
      }
    }
    EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
    EXPECT_TRUE(ckpt.find("lm_head.weight").has_value()) << "untied: lm_head is written";

    // engine run loads the shards (bf16 -> the recipe's fp32) and trains a few steps
    const fs::path out = scratch_ / (arch + "_run");
    r = engine({"run", (fs::path(std::getenv("ENGINE_SOURCE_DIR")) / "recipes" / "tiny_lora.toml").string(),
                "--set", "model.plugin=" + arch, "--set", "model.path=" + a.string(), "--set",
                "train.output_dir=" + out.string(), "--set", "train.max_steps=3", "--set",
                "train.eval_every=0", "--set", "checkpoint.save_every=0", "--set", "log.every=1"},
               scratch_);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    std::ifstream metrics(out / "metrics.jsonl");
    int steps = 0;
    for (std::string line; std::getline(metrics, line);) {
      auto j = nlohmann::json::parse(line);
      if (!j.contains("loss")) continue;
      EXPECT_TRUE(std::isfinite(j["loss"].get<double>())) << line;
      ++steps;
    }
    EXPECT_GE(steps, 3) << r.out << r.err;
    EXPECT_EQ(entries(a), entries(b)) << "the run did not write into the model folder";
  }
}

TEST_F(ModelCli, InitModelFromAConfigHonoursDtypeAndRefusesWhatDoesNotFit) {
  const fs::path cfg = scratch_ / "config.json";
  std::ofstream(cfg) << small_config("qwen2");
  const fs::path f32 = scratch_ / "f32";
  CliRun r = engine(
      {"init-model", "--arch", "qwen2", "--config", cfg.string(), "--out", f32.string(), "--dtype", "f32"},
      scratch_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(entries(f32), (std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json",
                                                 "tokenizer_config.json"}))
      << "one file below --max-shard-size: no index";
  EXPECT_EQ(engine::io::SafetensorsFile::open(f32 / "model.safetensors").tensor("lm_head.weight").dtype_name,
            "F32");
  EXPECT_EQ(nlohmann::json::parse(read_file(f32 / "config.json"))["torch_dtype"], "float32");

  // the published Qwen2.5-7B config: the built-in 512-token tokenizer does not fit, refused before any work
  const fs::path big =
      fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" / "qwen2.5-7b-instruct" / "config.json";
  const fs::path x = scratch_ / "x";
  r = engine({"init-model", "--arch", "qwen2", "--config", big.string(), "--out", x.string()}, scratch_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--tokenizer"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(x));
  r = engine({"init-model", "--arch", "llama", "--config", big.string(), "--out", x.string()}, scratch_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("model_type"), std::string::npos) << r.err;
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--preset", "tiny", "--config", cfg.string()},
                                             {"--dtype", "int8", "--config", cfg.string()},
                                             {"--max-shard-size", "5XB", "--config", cfg.string()},
                                             {"--max-shard-size", "0", "--config", cfg.string()}}) {
    std::vector<std::string> all = {"init-model", "--arch", "qwen2", "--out", x.string()};
    all.insert(all.end(), args.begin(), args.end());
    r = engine(all, scratch_);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
  }
  // a non-empty folder is never written into, whatever is in it (the user's files stay as they were)
  const fs::path user = scratch_ / "user";
  fs::create_directories(user);
  std::ofstream(user / "model.safetensors") << "mine";
  r = engine({"init-model", "--arch", "qwen2", "--config", cfg.string(), "--out", user.string()}, scratch_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not an empty directory"), std::string::npos) << r.err;
  EXPECT_EQ(entries(user), std::set<std::string>{"model.safetensors"});
  EXPECT_EQ(read_file(user / "model.safetensors"), "mine");
  for (const std::string& f : entries(scratch_))
    EXPECT_EQ(f.find(".tmp-"), std::string::npos) << "staging directory left behind: " << f;
}

// The real Qwen tokenizer (../shared/fixtures/qwen-tokenizer) with a config of Qwen2.5's vocabulary and
// special ids, at a width that takes seconds: --tokenizer copies it, after checking it fits.
TEST_F(ModelCli, InitModelWithTheQwenTokenizerForAQwenVocabulary) {
  const char* shared = std::getenv("ENGINE_SHARED_DIR");
  const fs::path tok_dir = fs::path(shared != nullptr ? shared : "") / "fixtures" / "qwen-tokenizer";
  if (shared == nullptr || !fs::exists(tok_dir / "tokenizer.json"))
    GTEST_SKIP() << "no Qwen tokenizer at " << tok_dir << " (set ENGINE_SHARED_DIR to the shared folder)";
  auto c = nlohmann::json::parse(read_file(fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" /
                                           "qwen2.5-7b-instruct" / "config.json"));
  c["hidden_size"] = 16;  // Qwen2.5-7B's vocabulary (152064), bos/eos; 2 narrow layers
  c["intermediate_size"] = 24;
  c["num_hidden_layers"] = 1;
  c["num_attention_heads"] = 2;
  c["num_key_value_heads"] = 1;
  const fs::path cfg = scratch_ / "config.json", out = scratch_ / "qwen";
  std::ofstream(cfg) << c.dump(2);
  CliRun r = engine({"init-model", "--arch", "qwen2", "--config", cfg.string(), "--out", out.string(),
                     "--tokenizer", tok_dir.string()},
                    scratch_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(out / "tokenizer.json"), read_file(tok_dir / "tokenizer.json"));
  EXPECT_EQ(read_file(out / "tokenizer_config.json"), read_file(tok_dir / "tokenizer_config.json"));
  auto tok = engine::data::Tokenizer::from_file(out);
  EXPECT_LE(static_cast<int64_t>(tok.vocab_size()), 152064);
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), 151645);
  const auto file = engine::io::SafetensorsFile::open(out / "model.safetensors");
  EXPECT_EQ(file.tensor("model.embed_tokens.weight").shape[0], 152064);
  // the 512-token preset tokenizer does not fit this vocabulary's special ids; none writes no tokenizer
  r = engine({"init-model", "--arch", "qwen2", "--config", cfg.string(), "--out", (scratch_ / "n").string(),
              "--tokenizer", "none"},
             scratch_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(entries(scratch_ / "n"), (std::set<std::string>{"config.json", "model.safetensors"}));
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
