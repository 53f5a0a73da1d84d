// engine generate --model DIR [--adapter DIR] --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T]
//                 [--top-p P] [--seed S]
// Loads a Hugging Face model directory (and a PEFT adapter through its plugin), encodes the prompt with the
// model's tokenizer.json (with --chat: as one user turn through the chat template of tokenizer_config.json,
// with the assistant header appended), generates with a KV cache and prints the text as tokens arrive.
// Greedy at --temperature 0 (the default); otherwise temperature and top-p sampling seeded by --seed.
// Stops at the model's end-of-sequence tokens (config.json, generation_config.json and
// tokenizer_config.json's eos_token, plus the chat template's end-of-turn token) or after --max-new-tokens
// (default 256).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/cli/command.hpp"
#include "engine/cli/option_args.hpp"
#include "engine/core/error.hpp"
#include "engine/data/chat_template.hpp"
#include "engine/data/tokenizer.hpp"
#include "engine/host/host_session.hpp"
#include "engine/runtime/device.hpp"
#include "engine/session/adapter_loader.hpp"
#include "engine/session/generate.hpp"
#include "engine/session/model_loader.hpp"
#include "engine/session/text_streamer.hpp"

namespace engine::cli {

namespace {

namespace fs = std::filesystem;

std::optional<nlohmann::json> read_optional_json(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::exception& e) {
    fail("{} is not valid JSON: {}", file.string(), e.what());
  }
}

void add_ids(const nlohmann::json& v, std::vector<int32_t>& out) {
  if (v.is_number_integer()) out.push_back(v.get<int32_t>());
  if (v.is_array())
    for (const auto& x : v)
      if (x.is_number_integer()) out.push_back(x.get<int32_t>());
}

void add_token(const data::Tokenizer& tok, const nlohmann::json& v, std::vector<int32_t>& out) {
  std::string text;
  if (v.is_string()) text = v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    text = v["content"].get<std::string>();
  if (text.empty()) return;
  if (auto id = tok.token_to_id(text)) out.push_back(*id);
}

std::vector<int32_t> stop_tokens(const fs::path& dir, const session::ModelInstance& model,
                                 const data::Tokenizer& tok, const std::optional<data::ChatTemplate>& chat) {
  std::vector<int32_t> out;
  if (model.info().eos_token_id >= 0) out.push_back(static_cast<int32_t>(model.info().eos_token_id));
  if (auto gen = read_optional_json(dir / "generation_config.json"); gen && gen->contains("eos_token_id"))
    add_ids((*gen)["eos_token_id"], out);
  if (auto tc = read_optional_json(dir / "tokenizer_config.json"); tc && tc->contains("eos_token"))
    add_token(tok, (*tc)["eos_token"], out);
  if (chat) add_token(tok, std::string(chat->end_of_turn()), out);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

int generate_command(const std::vector<std::string>& args) {
  OptionArgs o = parse_option_args(
      args, {"--model", "--adapter", "--prompt", "--max-new-tokens", "--temperature", "--top-p", "--seed"},
      {"--chat"});
  const fs::path dir = o.require("--model");
  const std::string prompt = o.require("--prompt");
  session::GenerateOptions g;
  g.max_new_tokens = o.get_int("--max-new-tokens", 256);
  g.sampling.temperature = o.get_double("--temperature", 0.0);
  g.sampling.top_p = o.get_double("--top-p", 1.0);
  const int64_t seed = o.get_int("--seed", 0);
  if (seed < 0) throw UsageError("--seed must be >= 0");
  g.sampling.seed = static_cast<uint64_t>(seed);
  if (g.max_new_tokens < 1) throw UsageError("--max-new-tokens must be at least 1");
  session::TokenSampler check(g.sampling);  // rejects a bad temperature / top-p before loading anything

  data::Tokenizer tokenizer = data::Tokenizer::from_file(dir);
  std::optional<data::ChatTemplate> chat;
  std::vector<int32_t> ids;
  if (o.has("--chat")) {
    chat = data::ChatTemplate::from_tokenizer_config(dir);
    std::vector<data::ChatMessage> messages{{"user", prompt}};
    ids = tokenizer.encode(chat->render(messages, /*add_generation_prompt=*/true).text, false);
  } else {
    ids = tokenizer.encode(prompt, /*add_special_tokens=*/true);
  }

  auto registry = discover_plugins();
  rt::CpuDevice cpu;
  host::HostSession session(cpu, g.sampling.seed);
  session::ModelLoadOptions load;
  load.options_json = R"({"dtype": "float32"})";
  load.trainable = false;
  std::unique_ptr<session::ModelInstance> model = session::load_model(session, *registry, dir, load);
  const plugins::PluginRecord& plugin = registry->require(ENG_KIND_MODEL, model->plugin_name());
  if (!plugin.has(ENG_MODEL_CAP_KV_CACHE))
    fail("model plugin '{}' does not support a KV cache (ENG_MODEL_CAP_KV_CACHE); it cannot generate",
         plugin.name);
  std::unique_ptr<host::PluginPeft> adapter;
  if (o.has("--adapter")) adapter = session::load_adapter(session, *registry, o.require("--adapter"));
  g.stop_tokens = stop_tokens(dir, *model, tokenizer, chat);
  g.sampled_vocab = static_cast<int64_t>(tokenizer.vocab_size());
  spdlog::debug("prompt: {} tokens; stop tokens: {}", ids.size(), g.stop_tokens.size());

  session::TextStreamer streamer(tokenizer, [](std::string_view piece) { std::cout << piece << std::flush; });
  session::generate(*model, ids, g, [&](int32_t id) { streamer.put(id); });
  streamer.finish();
  std::cout << "\n";
  return kExitOk;
}

}  // namespace engine::cli
