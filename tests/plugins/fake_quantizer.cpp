// A test quantizer: keeps linear weights as bf16 copies (2 bytes per element). Declares
// ENG_QUANT_CAP_FROZEN_ONLY in the variant the recipe tests use to check the "full fine-tuning of quantized
// weights" refusal.
#include <memory>
#include <string>

#include "engine/cpp/quantizer.hpp"

namespace {

using engine::sdk::Host;
using engine::sdk::Param;
using engine::sdk::ParamInfo;
using engine::sdk::Tensor;

constexpr char kSchema[] = R"({"type": "object", "properties": {
  "block_size": {"type": "integer", "default": 64, "minimum": 16, "maximum": 4096, "description": "values per scale"}
}})";

struct Bf16Weight : engine::sdk::Quantizer::State {
  Tensor value;  // (out,in) bf16
};

class FakeQuantizer : public engine::sdk::Quantizer {
 public:
  FakeQuantizer(Host&, const std::string&) {}
  bool takes(const ParamInfo& p) override { return p.role == ENG_ROLE_LINEAR; }
  std::unique_ptr<State> quantize(Host& host, Param, const Tensor& value) override {
    auto w = std::make_unique<Bf16Weight>();
    w->value = host.cast(value, ENG_BF16);
    return w;
  }
  Tensor linear(Host& host, State& state, const Tensor& x) override {
    auto& w = static_cast<Bf16Weight&>(state);
    return host.matmul(x, host.cast(w.value, x.dtype()), false, true);
  }
  Tensor dequantize(Host& host, State& state, eng_dtype dtype) override {
    return host.cast(static_cast<Bf16Weight&>(state).value, dtype);
  }
  double bytes_per_element() override { return 2.0; }
};

}  // namespace

ENGINE_REGISTER_QUANTIZER(FakeQuantizer, FAKE_NAME, "0.0.1", "test quantizer (bf16 storage)", kSchema,
                          FAKE_CAPS)
