// engine export --checkpoint DIR --merged --out DIR [--dtype bf16|fp32] [--verify]
// Writes a Hugging Face model with the checkpoint's adapter merged into its base weights (W + scaling B A per
// target), so that it loads without PEFT: model.safetensors in --dtype (default: the base config's
// torch_dtype, bf16 or fp32), config.json and the tokenizer files of the base model. The base model is the
// adapter_config.json's base_model_name_or_path.
// --verify: on a sample batch, the written model's logits (read back from --out) must equal the base model +
// adapter's logits within the tolerance of the written dtype (bf16: 2e-2 relative to the largest logit; fp32:
// 1e-4; a quantized base: bf16's); the numbers are printed and a mismatch exits 1.
// A QLoRA checkpoint (its recipe.json has a [quantizer]) loads the base through that quantizer, as in training,
// and merges into the quantized weights dequantized to bf16 (as PEFT's merge_and_unload on a bnb-4bit model
// does), saying so; the weights the quantizer did not take are the base's own.
// --logits FILE: also write the sample batch and the engine's base + adapter logits as JSON
// ({"input_ids": [[...]], "logits": [...]}), for scripts/check_peft_adapter.py --engine-logits FILE.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "engine/cli/command.hpp"
#include "engine/cli/option_args.hpp"
#include "engine/core/error.hpp"
#include "engine/host/host_api.hpp"
#include "engine/io/checkpoint_manifest.hpp"
#include "engine/host/host_session.hpp"
#include "engine/host/plugin_quantizer.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/session/adapter_loader.hpp"
#include "engine/session/model_loader.hpp"
#include "engine/session/model_writer.hpp"

namespace engine::cli {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kSampleB = 2, kSampleT = 16;

// The sample batch: (B, T) ids spread over the vocabulary.
std::vector<int32_t> sample_ids(int64_t V) {
  std::vector<int32_t> ids(kSampleB * kSampleT);
  for (int64_t i = 0; i < kSampleB * kSampleT; ++i) ids[i] = static_cast<int32_t>((i * 7919 + 3) % V);
  return ids;
}

// logits of the sample batch -> (B * T * V) floats
std::vector<float> sample_logits(session::ModelInstance& model) {
  const int64_t B = kSampleB, T = kSampleT;
  std::vector<int32_t> ids = sample_ids(model.info().vocab_size), pos(B * T);
  for (int64_t i = 0; i < B * T; ++i) pos[i] = static_cast<int32_t>(i % T);
  rt::Device& dev = model.session().device();
  rt::Tensor hidden =
      model.forward(rt::Tensor::from_vector(rt::Dims{B, T}, ENG_I32, dev, ids),
                    rt::Tensor::from_vector(rt::Dims{B, T}, ENG_I32, dev, pos), rt::Tensor(), nullptr,
                    /*grad_enabled=*/false);
  rt::Tensor flat = hidden.contiguous().view(rt::Dims{B * T, model.info().hidden_size});
  return model.logits(flat).to(ENG_F32).to_float_vector();
}

}  // namespace

int export_command(const std::vector<std::string>& args) {
  OptionArgs o =
      parse_option_args(args, {"--checkpoint", "--out", "--dtype", "--logits"}, {"--merged", "--verify"});
  const fs::path ckpt = o.require("--checkpoint"), out = o.require("--out");
  if (!o.has("--merged")) {
    throw UsageError(
        "export writes merged models only: pass --merged (the checkpoint's adapter is already in PEFT's "
        "format, usable as it is with `engine generate --adapter` or PeftModel.from_pretrained)");
  }
  const fs::path config_file = ckpt / "adapter_config.json";
  if (!fs::is_directory(ckpt)) {
    fail("--checkpoint {}: no such directory; pass one of the checkpoint-<step> folders in train.output_dir",
         ckpt.string());
  }
  // A checkpoint of this engine carries manifest.json: nothing damaged is ever merged into a model. An adapter
  // folder from elsewhere (PEFT) has none: said, and exported as it is.
  if (fs::exists(ckpt / io::kCheckpointManifest)) {
    io::verify_checkpoint_manifest(ckpt);
  } else {
    spdlog::info("{} has no {} (not a checkpoint written by this engine): its files are not verified",
                 ckpt.string(), io::kCheckpointManifest);
  }
  if (!fs::exists(config_file)) {
    fail(
        "{} has no adapter_config.json: export --merged needs an adapter checkpoint (a full fine-tuning "
        "checkpoint "
        "is already a Hugging Face model)",
        ckpt.string());
  }
  nlohmann::json adapter_config = nlohmann::json::parse(std::ifstream(config_file));
  const fs::path base = adapter_config.value("base_model_name_or_path", std::string());
  if (base.empty() || !fs::exists(base / "config.json")) {
    fail(
        "{}: base_model_name_or_path '{}' is not a model directory on this machine; if the base model moved, "
        "set base_model_name_or_path there to its folder",
        config_file.string(), base.string());
  }
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out))) {
    fail("--out {} already exists and is not an empty directory; choose a new directory", out.string());
  }
  io::HfConfig base_config = io::read_hf_config(base);
  std::string dtype_name = o.get("--dtype", "");
  if (dtype_name.empty()) {
    const std::string td =
        base_config.json.value("torch_dtype", base_config.json.value("dtype", std::string("float32")));
    dtype_name = td == "bfloat16" ? "bf16" : "fp32";
  }
  if (dtype_name != "bf16" && dtype_name != "fp32") throw UsageError("--dtype must be bf16 or fp32");
  const eng_dtype dtype = dtype_name == "bf16" ? ENG_BF16 : ENG_F32;

  auto registry = discover_plugins();
  rt::Device& dev = rt::cpu_device();
  host::HostSession hs(dev, 0);
  session::ModelLoadOptions mo;
  mo.options_json = R"({"dtype": "float32"})";
  // A QLoRA checkpoint (its recipe has a [quantizer]): the adapter was trained on the quantized base, so the
  // base loads through the same quantizer and the merge goes into its dequantization rounded to bf16.
  std::unique_ptr<host::PluginQuantizer> quantizer;
  const fs::path recipe_json = ckpt / "recipe.json";
  nlohmann::json quant_section;
  if (fs::exists(recipe_json)) {
    const nlohmann::json rj = nlohmann::json::parse(std::ifstream(recipe_json), nullptr, false);
    if (rj.is_object() && rj.contains("quantizer") && rj["quantizer"].is_object()) quant_section = rj["quantizer"];
  }
  if (!quant_section.empty()) {
    const std::string qname = quant_section.value("plugin", std::string());
    nlohmann::json qopts = quant_section;
    qopts.erase("plugin");
    mo.before_weights = [&, qname, qopts](session::ModelInstance&) {
      const plugins::PluginRecord& rec = registry->require(ENG_KIND_QUANTIZER, qname);
      quantizer = std::make_unique<host::PluginQuantizer>(hs, host::host_api(), rec.table<eng_quantizer_vtable>(),
                                                          rec.name, qopts.dump());
      rt::ParamStore& params = hs.params();  // export trains nothing: every base weight is frozen
      for (size_t i = 0; i < params.size(); ++i)
        if (!params.at(i).tied()) params.set_trainable(params.at(i), false);
      params.assign_quantizer(*quantizer);
      hs.set_quantizer(quantizer.get());
    };
  }
  std::unique_ptr<session::ModelInstance> model = session::load_model(hs, *registry, base, mo);
  hs.params().materialize_all();
  std::unique_ptr<host::PluginPeft> peft = session::load_adapter(hs, *registry, ckpt);
  std::vector<float> reference;
  if (o.has("--verify") || o.has("--logits")) reference = sample_logits(*model);
  if (o.has("--logits")) {
    const std::vector<int32_t> ids = sample_ids(model->info().vocab_size);
    nlohmann::json j;
    j["input_ids"] = nlohmann::json::array();
    for (int64_t b = 0; b < kSampleB; ++b) {
      j["input_ids"].push_back(
          std::vector<int32_t>(ids.begin() + b * kSampleT, ids.begin() + (b + 1) * kSampleT));
    }
    j["logits"] = reference;
    std::ofstream(o.require("--logits")) << j.dump() << "\n";
  }

  // W <- merge(W) for every parameter the adapter is attached to, then take the adapter out of the seam.
  int64_t merged = 0, dequantized = 0;
  rt::ParamStore& store = hs.params();
  for (size_t i = 0; i < store.size(); ++i) {
    rt::Param& p = store.at(i);
    if (p.peft_cookie == nullptr) continue;
    if (p.quantized()) {
      rt::Param& root = *p.root;
      rt::Tensor dense = root.quantizer->dequantize(root.quant_state, ENG_BF16).to(ENG_F32);
      rt::Tensor m = peft->merge(p.peft_cookie, dense);
      root.quantizer->free_state(root.quant_state);
      root.quant_state = nullptr;
      root.quantizer = nullptr;
      root.value = rt::Tensor::empty(p.shape(), store.storage_dtype(root), store.device());
      root.value.copy_from(m);
      ++dequantized;
    } else {
      rt::Tensor& w = store.value(p);
      rt::Tensor m = peft->merge(p.peft_cookie, w.to(ENG_F32));
      w.copy_from(m);
    }
    p.peft_cookie = nullptr;
    ++merged;
  }
  if (dequantized > 0) {
    std::cout << "the base was quantized with " << quantizer->name() << " in training: dequantized " << dequantized
              << " weights to bf16 and merged the adapter into them (the other weights are the base's own)\n";
  }
  hs.set_peft(nullptr);
  fs::create_directories(out);
  session::write_model_safetensors(store, out / "model.safetensors", dtype);
  nlohmann::json cfg = base_config.json;
  cfg["torch_dtype"] = dtype == ENG_BF16 ? "bfloat16" : "float32";
  std::ofstream(out / "config.json") << cfg.dump(2) << "\n";
  for (const char* f :
       {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"}) {
    if (fs::exists(base / f)) fs::copy_file(base / f, out / f, fs::copy_options::overwrite_existing);
  }
  std::cout << "merged the adapter of " << ckpt.string() << " into " << merged << " weights of "
            << base.string() << " and wrote " << out.string() << " (" << dtype_name << ")\n";

  if (o.has("--verify")) {
    host::HostSession hs2(dev, 0);
    mo.before_weights = nullptr;  // the written model is dense
    std::unique_ptr<session::ModelInstance> written = session::load_model(hs2, *registry, out, mo);
    std::vector<float> got = sample_logits(*written);
    double max_ref = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < reference.size(); ++i) {
      max_ref = std::max(max_ref, std::abs(static_cast<double>(reference[i])));
      max_diff = std::max(max_diff, std::abs(static_cast<double>(got[i]) - reference[i]));
    }
    // a quantized base merged through its bf16 dequantization is held to bf16's tolerance whatever --dtype
    const bool bf16_merge = dtype == ENG_BF16 || dequantized > 0;
    const double tol = bf16_merge ? 2e-2 * std::max(1.0, max_ref) : 1e-4 * std::max(1.0, max_ref);
    std::cout << "verify: max |merged - (base + adapter)| logit difference " << max_diff << " (largest logit "
              << max_ref << ", tolerance " << tol << "): " << (max_diff <= tol ? "ok" : "MISMATCH") << "\n";
    if (!(max_diff <= tol)) return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace engine::cli
