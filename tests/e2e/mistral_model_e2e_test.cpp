// The out-of-tree model example (examples/mistral_model) against the installed SDK alone: the engine
// installed to a temporary prefix, the example configured with only that prefix and built, then loaded by the
// unchanged engine from ENGINE_PLUGIN_PATH. Against tests/data/models/mistral_tiny
// (scripts/fixtures/make_mistral_fixture.py: a float64 re-implementation of transformers' MistralForCausalLM,
// sliding_window 4 so that the window bites): logits at the real positions and the loss within 1e-4
// (relative), the gradients of both layers' attention inputs within 1e-3; the same logits when the rows are
// packed (segments through the plugin's windowed kernel); with sliding_window null the built-in attention
// path and greedy generation with the KV cache; config.json values it cannot honour refused by name; and
// `engine run` with LoRA on the example trains (the loss falls) and resumes bitwise exactly.
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "engine/host/host_api.hpp"
#include "engine/host/host_session.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/plugins/plugin_registry.hpp"
#include "engine/plugins/plugin_search_path.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/generate.hpp"
#include "engine/session/model_loader.hpp"
#include "tests/e2e/e2e_support.hpp"

namespace engine::e2e {
namespace {

using rt::Dims;
using rt::Tensor;

fs::path fixture() { return fs::path(std::getenv("ENGINE_TEST_DATA")) / "models" / "mistral_tiny"; }
fs::path work_dir() { return fs::temp_directory_path() / "engine_e2e_mistral_model"; }

// Installs the engine, builds the example against the installed prefix only (once per process) and puts its
// plugin folder first on ENGINE_PLUGIN_PATH; the folder of libmistral.so, or empty with the log on failure.
const fs::path& example_plugins() {
  static const fs::path dir = [] {
    const fs::path w = work_dir();
    fs::remove_all(w);
    fs::create_directories(w);
    const std::string launcher =
        std::system("command -v ccache >/dev/null 2>&1") == 0 ? " -DCMAKE_CXX_COMPILER_LAUNCHER=ccache" : "";
    const std::string log = (w / "build.log").string();
    const std::string cmd = "cmake --install '" + std::string(std::getenv("ENGINE_BINARY_DIR")) +
                            "' --prefix '" + (w / "prefix").string() + "' >'" + log + "' 2>&1 && cmake -S '" +
                            (source_dir() / "examples/mistral_model").string() + "' -B '" +
                            (w / "example").string() + "' -G Ninja -DCMAKE_PREFIX_PATH='" +
                            (w / "prefix").string() + "'" + launcher + " >>'" + log +
                            "' 2>&1 && cmake --build '" + (w / "example").string() + "' >>'" + log + "' 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      std::cerr << "building examples/mistral_model failed:\n" << read_file(log);
      return fs::path();
    }
    const fs::path plugins = w / "example" / "plugins";
    const char* old = std::getenv("ENGINE_PLUGIN_PATH");
    const std::string path =
        plugins.string() + (old != nullptr && *old != '\0' ? ":" + std::string(old) : "");
    setenv("ENGINE_PLUGIN_PATH", path.c_str(), 1);
    return plugins;
  }();
  return dir;
}

std::string shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

std::vector<float> floats(const io::SafetensorsTensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}
std::vector<int32_t> ints(const io::SafetensorsTensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

// max |ours - reference| / max |reference|
double rel_error(const std::vector<float>& ours, const std::vector<float>& ref) {
  EXPECT_EQ(ours.size(), ref.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ref.size() && i < ours.size(); ++i) {
    diff = std::max(diff, std::abs(double(ours[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// The example's model with a fixture folder's weights, on the CPU, in fp32.
struct Loaded {
  rt::CpuDevice cpu{2};
  host::HostSession session{cpu, 0};
  plugins::PluginRegistry registry{host::host_api()};
  std::unique_ptr<session::ModelInstance> model;

  explicit Loaded(const fs::path& dir) {
    registry.load_search_path(plugins::default_plugin_search_path());
    session::ModelLoadOptions options;
    options.options_json = R"({"dtype": "float32"})";
    model = session::load_model(session, registry, dir, options);
  }
  Tensor i32(const Dims& shape, const std::vector<int32_t>& v) {
    return Tensor::from_host(shape, ENG_I32, cpu, v.data(), v.size() * 4);
  }
};

// The fixture's weights under a config.json with `key` set to `value`, in work_dir()/name.
fs::path fixture_with(const std::string& name, const std::string& key, const nlohmann::json& value) {
  const fs::path d = work_dir() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  for (const char* f : {"model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(fixture() / f, d / f);
  nlohmann::json c = nlohmann::json::parse(read_file(fixture() / "config.json"));
  c[key] = value;
  std::ofstream(d / "config.json") << c.dump(2);
  return d;
}

// The fixture with sliding_window null: full causal attention.
fs::path fixture_without_window() { return fixture_with("no_window", "sliding_window", nullptr); }

// Logits at the real positions and the loss of expected.safetensors' padded batch; the gradients when
// `grads`.
void expect_parity(Loaded& m, const fs::path& expected_file, bool grads) {
  auto expected = io::SafetensorsFile::open(expected_file);
  auto ids_t = expected.tensor("input_ids");
  const int64_t B = ids_t.shape[0], T = ids_t.shape[1];
  const int64_t C = m.model->info().hidden_size, V = m.model->info().vocab_size;
  const std::vector<int32_t> ids = ints(ids_t), mask = ints(expected.tensor("attention_mask")),
                             labels = ints(expected.tensor("labels"));
  std::vector<int32_t> pos(static_cast<size_t>(B * T));
  for (int64_t r = 0; r < B * T; ++r) pos[size_t(r)] = static_cast<int32_t>(r % T);
  Tensor hidden = m.model->forward(m.i32({B, T}, ids), m.i32({B, T}, pos));
  ASSERT_EQ(hidden.shape(), (Dims{B, T, C}));
  const std::vector<float> logits =
      m.model->logits(hidden.detached().contiguous().view(Dims{B * T, C})).to_float_vector();
  const std::vector<float> ref_logits = floats(expected.tensor("logits"));
  std::vector<float> ours, ref;
  for (int64_t r = 0; r < B * T; ++r) {
    if (!mask[size_t(r)]) continue;
    ours.insert(ours.end(), logits.begin() + r * V, logits.begin() + (r + 1) * V);
    ref.insert(ref.end(), ref_logits.begin() + r * V, ref_logits.begin() + (r + 1) * V);
  }
  const double logit_error = rel_error(ours, ref);
  EXPECT_LT(logit_error, 1e-4) << expected_file;
  std::vector<int32_t> shifted(labels.size(), -100);
  int64_t n = 0;
  for (int64_t r = 0; r < B * T; ++r)
    if (r % T + 1 < T) n += (shifted[size_t(r)] = labels[size_t(r + 1)]) != -100;
  const Tensor loss = m.model->loss(hidden, m.i32({B * T}, shifted), 1.0 / double(n));
  const double ref_loss = floats(expected.tensor("loss"))[0];
  EXPECT_LT(std::abs(loss.item() - ref_loss) / ref_loss, 1e-4) << loss.item() << " vs " << ref_loss;
  std::cout << expected_file.filename().string() << ": logits rel error " << logit_error << ", loss "
            << loss.item() << " vs " << ref_loss << "\n";
  if (!grads) return;
  m.session.tape().backward(loss);
  auto ref_grads = io::SafetensorsFile::open(fixture() / "grads.safetensors");
  ASSERT_EQ(ref_grads.size(), 3u);
  for (size_t i = 0; i < m.session.params().size(); ++i) {
    rt::Param& p = m.session.params().at(i);
    if (!ref_grads.find(p.name())) continue;
    const Tensor g = m.session.params().grad(p);
    ASSERT_TRUE(g.defined()) << p.name();
    const double e = rel_error(g.to_float_vector(), floats(ref_grads.tensor(p.name())));
    EXPECT_LT(e, 1e-3) << p.name();
    std::cout << "  d loss / d " << p.name() << ": rel error " << e << "\n";
  }
}

TEST(MistralExample, BuildsAgainstTheInstalledSdkAndExportsOnlyItsEntrySymbol) {
  ASSERT_FALSE(example_plugins().empty());
  const fs::path so = example_plugins() / "libmistral.so";
  ASSERT_TRUE(fs::exists(so));
  const std::string exports =
      shell("nm -D --defined-only '" + so.string() +
            "' | awk '{print $NF}' | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$'");
  EXPECT_EQ(exports, "engine_plugin_negotiate\n");
  const fs::path log = work_dir() / "describe.log";
  ASSERT_EQ(run_engine({"plugins", "describe", "mistral"}, log), 0) << read_file(log);
  EXPECT_NE(read_file(log).find("dtype"), std::string::npos) << read_file(log);
  EXPECT_NE(read_file(log).find("model"), std::string::npos) << read_file(log);
  // listed as a model, without a loader warning (malformed schema, extra exports)
  const fs::path list = work_dir() / "list.log";
  ASSERT_EQ(run_engine({"plugins", "--json"}, list), 0) << read_file(list);
  const nlohmann::json all = nlohmann::json::parse(read_file(list), nullptr, false);
  ASSERT_TRUE(all.is_array()) << read_file(list);
  bool found = false;
  for (const auto& p : all) {
    if (p.value("name", "") != "mistral") continue;
    found = true;
    EXPECT_EQ(p.value("kind", ""), "model") << p.dump();
    EXPECT_TRUE(!p.contains("warnings") || p["warnings"].empty()) << p.dump();
  }
  EXPECT_TRUE(found) << read_file(list);
}

TEST(MistralExample, LogitsLossAndGradientsMatchTheReferenceWithTheSlidingWindow) {
  ASSERT_FALSE(example_plugins().empty());
  Loaded m(fixture());
  EXPECT_EQ(m.model->plugin_name(), "mistral");
  EXPECT_EQ(std::string(m.model->info().architecture), "MistralForCausalLM");
  expect_parity(m, fixture() / "expected.safetensors", true);
}

// The rows packed into one sequence (positions restart, segment ids separate them): the windowed kernel
// honours the segments, so the logits are those of the padded batch.
TEST(MistralExample, PackedRowsGiveThePaddedBatchLogits) {
  ASSERT_FALSE(example_plugins().empty());
  Loaded m(fixture());
  auto expected = io::SafetensorsFile::open(fixture() / "expected.safetensors");
  auto ids_t = expected.tensor("input_ids");
  const int64_t B = ids_t.shape[0], T = ids_t.shape[1];
  const int64_t C = m.model->info().hidden_size, V = m.model->info().vocab_size;
  const std::vector<int32_t> ids = ints(ids_t), mask = ints(expected.tensor("attention_mask"));
  std::vector<int32_t> packed, pos, seg;
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T && mask[size_t(b * T + t)]; ++t) {
      packed.push_back(ids[size_t(b * T + t)]);
      pos.push_back(static_cast<int32_t>(t));
      seg.push_back(static_cast<int32_t>(b));
      rows.push_back(b * T + t);
    }
  const int64_t L = static_cast<int64_t>(packed.size());
  Tensor hidden =
      m.model->forward(m.i32({1, L}, packed), m.i32({1, L}, pos), m.i32({1, L}, seg), nullptr, false);
  const std::vector<float> logits = m.model->logits(hidden.contiguous().view(Dims{L, C})).to_float_vector();
  const std::vector<float> ref_logits = floats(expected.tensor("logits"));
  std::vector<float> ref;
  for (int64_t r : rows) ref.insert(ref.end(), ref_logits.begin() + r * V, ref_logits.begin() + (r + 1) * V);
  EXPECT_LT(rel_error(logits, ref), 1e-4);
}

TEST(MistralExample, WithoutAWindowTheBuiltInAttentionMatchesAndGeneratesAsTheReference) {
  ASSERT_FALSE(example_plugins().empty());
  const fs::path dir = fixture_without_window();
  {
    Loaded m(dir);
    expect_parity(m, fixture() / "expected_no_window.safetensors", false);
  }
  const nlohmann::json g = nlohmann::json::parse(read_file(fixture() / "generation.json"));
  Loaded m(dir);
  int cases = 0;
  for (const auto& c : g["cases"]) {
    if (!c["sliding_window"].is_null()) continue;
    const auto prompt = c["prompt"].get<std::vector<int32_t>>();
    const auto want = c["new_tokens"].get<std::vector<int32_t>>();
    session::GenerateOptions o;
    o.max_new_tokens = static_cast<int64_t>(want.size());
    EXPECT_EQ(session::generate(*m.model, prompt, o, [](int32_t) {}), want);
    ++cases;
  }
  EXPECT_EQ(cases, 2);
}

// With the window: generation through the KV cache while every position is below sliding_window equals the
// reference; past it the plugin refuses (its cache keeps every key) and says what to do.
TEST(MistralExample, GenerationWithinTheWindowMatchesAndPastItIsRefused) {
  ASSERT_FALSE(example_plugins().empty());
  const nlohmann::json g = nlohmann::json::parse(read_file(fixture() / "generation.json"));
  Loaded m(fixture());
  const nlohmann::json& c = g["cases"].back();
  ASSERT_EQ(c["sliding_window"], 4);
  const auto prompt = c["prompt"].get<std::vector<int32_t>>();
  const auto want = c["new_tokens"].get<std::vector<int32_t>>();
  session::GenerateOptions o;
  o.max_new_tokens = static_cast<int64_t>(want.size());
  EXPECT_EQ(session::generate(*m.model, prompt, o, [](int32_t) {}), want);
  o.max_new_tokens = 4;
  try {
    session::generate(*m.model, prompt, o, [](int32_t) {});
    ADD_FAILURE() << "generation past sliding_window was not refused";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("past sliding_window = 4"), std::string::npos) << e.what();
  }
}

// A config.json value the plugin cannot honour is refused at load, naming the key, the value and the fix.
TEST(MistralExample, RefusesConfigValuesItCannotHonour) {
  ASSERT_FALSE(example_plugins().empty());
  const std::vector<std::tuple<std::string, nlohmann::json, std::string>> cases = {
      {"sliding_window", 0, "key 'sliding_window' is 0; it must be a positive integer"},
      {"attention_dropout", 0.1, "attention dropout is not implemented"},
      {"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, "rope_scaling.rope_type' is 'yarn'"},
      {"hidden_act", "gelu", "only \"silu\" is supported"},
      {"num_key_value_heads", 3, "must divide num_attention_heads = 4"}};
  for (const auto& [key, value, message] : cases) {
    try {
      Loaded m(fixture_with("bad_" + key, key, value));
      ADD_FAILURE() << key << " = " << value.dump() << " was accepted";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << key << ": " << e.what();
    }
  }
}

// `engine run` on the fixture with the in-tree LoRA and AdamW: max_seq_len 64 > sliding_window, so training
// runs the plugin's windowed kernel (forward and backward); the loss falls; resuming from step 6 is bitwise
// exact.
TEST(MistralExample, TrainsWithLoraAndResumesExactly) {
  ASSERT_FALSE(example_plugins().empty());
  const fs::path dir = fresh_dir("mistral_model_run");
  {  // plain text from the alpaca-style examples (the fixture's tokenizer has no chat template)
    std::ifstream in(source_dir() / "data/tiny/train.jsonl");
    std::ofstream out(dir / "train.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      const nlohmann::json j = nlohmann::json::parse(line);
      out << nlohmann::json{{"text",
                             j["instruction"].get<std::string>() + " " + j["output"].get<std::string>()}}
                 .dump()
          << "\n";
    }
  }
  std::ofstream(dir / "run.toml")
      << "[model]\nplugin = \"mistral\"\npath = \"" << fixture().string()
      << "\"\ndtype = \"fp32\"\n"
         "[peft]\nplugin = \"lora\"\nr = 8\nlora_alpha = 16\nlora_dropout = 0.0\n"
         "target_modules = \"all-linear\"\n"
         "[optimizer]\nplugin = \"adamw\"\nlr = 2e-2\n"
         "[data]\ntrain = \""
      << (dir / "train.jsonl").string()
      << "\"\nformat = \"text\"\nchat_template = \"none\"\nmax_seq_len = 64\npacking = true\n"
         "[train]\nmicro_batch_size = 4\nmax_steps = 12\ndevice = \"cpu\"\nseed = 7\n"
         "eval_every = 0\n[checkpoint]\nsave_every = 6\nkeep_last = 0\n[log]\nevery = 1\n";
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"run", (dir / "run.toml").string(), "--set",
                                    "train.output_dir=" + out.string()};
  };
  ASSERT_EQ(run_engine(args(dir / "a"), dir / "a.log"), 0) << read_file(dir / "a.log");
  const std::string log = read_file(dir / "a.log");
  EXPECT_NE(log.find("sliding_window 4 bites"), std::string::npos) << log;
  auto la = train_lines(dir / "a");
  ASSERT_EQ(la.size(), 12u);
  const double first = la[1]["loss"].get<double>(), last = la[12]["loss"].get<double>();
  EXPECT_LT(last, first - 0.5) << "the loss did not fall: " << first << " -> " << last;
  std::cout << "mistral + lora: loss " << first << " -> " << last << " in 12 steps\n";

  auto resumed = args(dir / "b");
  resumed.push_back("--resume");
  resumed.push_back((dir / "a/checkpoint-6").string());
  ASSERT_EQ(run_engine(resumed, dir / "b.log"), 0) << read_file(dir / "b.log");
  EXPECT_TRUE(same_bytes(dir / "a/checkpoint-12/adapter_model.safetensors",
                         dir / "b/checkpoint-12/adapter_model.safetensors"));
  EXPECT_TRUE(same_bytes(dir / "a/checkpoint-12/optimizer.safetensors",
                         dir / "b/checkpoint-12/optimizer.safetensors"));
  EXPECT_FALSE(same_bytes(dir / "a/checkpoint-6/adapter_model.safetensors",
                          dir / "a/checkpoint-12/adapter_model.safetensors"));
  auto lb = train_lines(dir / "b");
  for (int64_t s = 7; s <= 12; ++s) EXPECT_EQ(la[s]["loss"].get<double>(), lb[s]["loss"].get<double>()) << s;
}

}  // namespace
}  // namespace engine::e2e
