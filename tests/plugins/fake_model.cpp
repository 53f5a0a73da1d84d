// A test model: embedding -> one linear per block -> rms_norm. Enough to exercise the model adapter and to
// stand in the [model] slot of recipe tests.
#include <string>

#include "engine/cpp/json.hpp"
#include "engine/cpp/model.hpp"

namespace {

using engine::sdk::Batch;
using engine::sdk::Block;
using engine::sdk::Host;
using engine::sdk::Json;
using engine::sdk::Param;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"({"type": "object", "properties": {
  "attn_impl": {"type": "string", "default": "auto", "enum": ["auto", "naive"], "description": "attention kernel"}
}})";

constexpr char kTinyConfig[] = R"({"vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 2})";

class FakeModel : public engine::sdk::Model {
 public:
  FakeModel(Host&, const std::string& hf_config_json, const std::string&) {
    Json c = Json::parse(hf_config_json);
    vocab_ = c["vocab_size"].as_int();
    hidden_ = c["hidden_size"].as_int();
    layers_ = static_cast<int32_t>(c["num_hidden_layers"].as_int());
  }
  static const char* preset_config(const char* preset) {
    return std::string(preset) == "tiny" ? kTinyConfig : nullptr;
  }
  eng_model_info info() override {
    eng_model_info i{};
    i.n_layers = layers_;
    i.vocab_size = vocab_;
    i.hidden_size = hidden_;
    i.lm_head_param = "embed.weight";
    i.architecture = "FakeForCausalLM";
    i.bos_token_id = -1;
    i.eos_token_id = -1;
    return i;
  }
  void declare_params(Host& host) override {
    embed_ = host.declare({"embed.weight", {vocab_, hidden_}, ENG_F32, ENG_ROLE_EMBEDDING});
    for (int32_t i = 0; i < layers_; ++i) {
      proj_.push_back(host.declare({"layers." + std::to_string(i) + ".proj.weight",
                                    {hidden_, hidden_},
                                    ENG_F32,
                                    ENG_ROLE_LINEAR,
                                    0,
                                    ENG_INIT_NORMAL,
                                    0.02}));
    }
    norm_ =
        host.declare({"norm.weight", {hidden_}, ENG_F32, ENG_ROLE_NORM, ENG_PARAM_NO_DECAY, ENG_INIT_ONES});
  }
  Tensor forward(Host& host, const Batch& batch) override {
    Tensor x = host.embedding(embed_, batch.input_ids);  // (B,T,C)
    for (int32_t i = 0; i < layers_; ++i) {
      Block block(host, i);
      x = host.add(x, host.linear(x, proj_[static_cast<size_t>(i)]));
    }
    return host.rms_norm(x, norm_, 1e-6);
  }

 private:
  int64_t vocab_ = 0, hidden_ = 0;
  int32_t layers_ = 0;
  Param embed_, norm_;
  std::vector<Param> proj_;
};

}  // namespace

ENGINE_REGISTER_MODEL(FakeModel, FAKE_NAME, "0.0.1", "test model (embedding, linears, norm)", kSchema,
                      FAKE_CAPS)
